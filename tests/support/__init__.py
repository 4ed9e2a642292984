"""Helpers of the test suite (and of the benchmarks under scripts/).

- audio: small WAV files in memory
- backends: reading the real Postgres and RabbitMQ (queries, queue contents)
- der: diarization error rate (miss, false alarm, confusion)
- diarization_audio: generated multi-voice conversations with reference turns
- fake_llm: an OpenAI-compatible chat endpoint on loopback
- isolation: free ports, a fresh database and RabbitMQ vhost (IsolatedEnv)
- jobs: uploading to the ingest API and waiting for the job
- memory: resident memory (RSS) of a process or a process tree, sampled
- models: the model cache and its provisioning commands
- servers: the services as processes
- speech: espeak-ng speech with known text
- tcp_proxy: a loopback TCP proxy a test can cut
- webhook_receiver: a signed-webhook receiver on loopback
- wer: word error rate
"""
