"""Alert rules over the quotas, stored as a state machine in the history store, and delivered
to webhooks.

::

    config.py    [alerts] -> AlertSettings (rules, overrides, webhooks)
    rules.py     pure: a quota / an account's reads + rules -> verdicts
    machine.py   pure: stored states + verdicts -> changes (pending -> firing -> resolved)
    store.py     the alert tables: apply changes, the outbox, leases, reads for the graph
    messages.py  an event in words
    formats.py   pure: json, slack and alertmanager bodies; the HMAC signature
    delivery.py  sending the outbox, with retries and a deadline
    engine.py    after a snapshot run: evaluate every account, then deliver
"""
