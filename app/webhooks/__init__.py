"""Outgoing webhooks: the sender port, its HTTP adapter and the delivery worker.

port.py     WebhookSender protocol (send one signed request), Attempt outcome
signing.py  Standard Webhooks headers, signed with the ``standardwebhooks`` package
http.py     HttpSender: httpx, a 10 s timeout, public addresses only in production
worker.py   DeliveryWorker: claims due deliveries in every server process, bounded per endpoint
"""
