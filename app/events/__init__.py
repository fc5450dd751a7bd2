"""Live events: from a committed unit of work to the subscribers in every process.

hub.py       this process's subscribers (Feed per subscription), keyed by account id
bus.py       EventBus protocol; InProcessEventBus (SQLite, one process)
postgres.py  PostgresEventBus: pg_notify inside the transaction, LISTEN in every process
alarm.py     RenewalAlarm: wakes feeds when a renewal or expiry takes effect
"""
