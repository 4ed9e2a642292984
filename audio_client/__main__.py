"""`python -m audio_client`: the `audio-client` command."""

from __future__ import annotations

import sys

from audio_client.cli import main

sys.exit(main())
