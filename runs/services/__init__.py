"""Every state change of the console, one function each, a module per sub-domain.

Each service takes keyword-only arguments and the acting user, checks the
permission itself, runs in one transaction, refuses a run in the wrong state
with a :class:`runs.errors.ConsoleError` whose message can be shown as is, and
writes its audit row in the same transaction as the change. Background work is
enqueued in that transaction too: the database task backend makes both land
or neither.

- ``decisions``: approving or rejecting a suspension, the one way past a gate;
- ``operations``: resume, reopen, replay, cancel, delete (one or many runs);
- ``actions``: what they share (the row lock, one open action per run);
- ``bulk``: an action on every run a filter matched, carried out by a worker;
- ``recovery``: actions whose worker was lost;
- ``notifications``: telling approvers a run waits for them;
- ``deadlines``: a gate's due and expiry times, and its expiry, on schedule;
- ``reminders``: reminding (and escalating to) who may decide an overdue gate;
- ``imports``: runs in bulk from NeuroCore files;
- ``access``: users, groups, scopes and approval policies, audited;
- ``delegations``: who decides for someone out of office, audited;
- ``preferences``: what a person chose for themselves (their time zone).
"""
