"""Real processes for tests and demos: Envoy, echo workloads, and a local mesh of both.

Kept import-light on purpose: every echo workload is ``python -m meshgen.testenv.echo``, and its start-up time is
part of every traffic test.
"""
