"""DiscountFlow's load, soak and fault suite (issue 15).

``python loadtest/run.py --profile one-box|scale-out --minutes N [--faults]`` starts the service
as the README documents it, seeds it, drives it with Locust (``loadtest/locustfile.py``),
injects faults (``loadtest/faults.py``, through ``loadtest/proxy.py``), samples the processes'
memory and file descriptors, checks what the clients saw against the database, and writes
``loadtest/reports/<timestamp>/``.
"""
