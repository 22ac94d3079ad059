"""The meter workers: claim commands from the database, run them over EMOP, record the results.

``daemon.Worker`` is the process; ``workflows`` what each kind of command does;
``queries`` the SQL they call; ``metrics`` what they expose to Prometheus.
"""
