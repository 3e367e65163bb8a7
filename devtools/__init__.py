"""What the tests, the deploy rehearsal and the benchmarks run the platform with, here: stand-ins
for Google's side (standins), a private PostgreSQL and servers on loopback (harness), the
synthesized Cloud Run spec read back (deployed_spec), the chain as dev deploys it (local_chain)
and headless Chromium (browser). Never part of an image."""
