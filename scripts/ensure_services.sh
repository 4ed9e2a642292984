#!/usr/bin/env bash
# Make sure RabbitMQ and PostgreSQL answer on loopback, then create the project's database.
#
# For each server: use it if it answers; otherwise start the locally installed server;
# otherwise, on Debian as root, install it and start it; otherwise stop and say what is
# missing. Ports and the database name come from AMQP_URL and DATABASE_URL (defaults match
# the services' own defaults).
set -euo pipefail

DATABASE_URL=${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/audio_pipeline}
db_name=${DATABASE_URL##*/}
db_name=${db_name%%\?*}
db_admin_url=${DATABASE_URL%/*}/postgres

say() { echo "ensure-services: $*" >&2; }
die() { say "$*"; exit 1; }

answers() {  # answers PORT: true if something accepts TCP connections on 127.0.0.1:PORT
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

wait_for() {  # wait_for NAME PORT SECONDS
    local i
    for ((i = 0; i < $3; i++)); do
        answers "$2" && return 0
        sleep 1
    done
    die "$1 did not start listening on 127.0.0.1:$2 within $3 s"
}

apt_updated=0
apt_install() {
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null ||
        die "$1 is not installed and cannot be installed here (needs Debian and root): install $*"
    if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

start_postgres() {
    if ! command -v pg_ctlcluster >/dev/null; then
        say "PostgreSQL is not installed; installing it"
        apt_install postgresql
        # A development stack on loopback: trust local TCP connections, like this kind's machines.
        for hba in /etc/postgresql/*/main/pg_hba.conf; do
            grep -q "audio-pipeline" "$hba" || sed -i '1i host all all 127.0.0.1/32 trust # audio-pipeline\nhost all all ::1/128 trust # audio-pipeline' "$hba"
        done
    fi
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    say "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_for PostgreSQL 5432 30
}

start_rabbitmq() {
    if ! command -v rabbitmq-server >/dev/null; then
        say "RabbitMQ is not installed; installing it"
        apt_install rabbitmq-server
    fi
    say "starting RabbitMQ"
    rabbitmq-server -detached || true
    wait_for RabbitMQ 5672 90
}

answers 5432 || start_postgres
answers 5672 || start_rabbitmq

command -v psql >/dev/null || apt_install postgresql-client
exists=$(psql "$db_admin_url" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$db_name'") ||
    die "PostgreSQL answers on 5432 but refuses $db_admin_url: check its pg_hba.conf"
if [ "$exists" != 1 ]; then
    psql "$db_admin_url" -qc "CREATE DATABASE \"$db_name\"" >/dev/null
    say "created database $db_name"
fi
say "RabbitMQ and PostgreSQL are up; database $db_name exists"
