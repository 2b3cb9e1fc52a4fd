"""The airlock: outputs leave a project only after automatic disclosure checks and the
approval of independent output checkers.

A session asks for files to leave (`enclave.request_export`, or the session's export page).
The airlock service snapshots them with their SHA-256, checks them (`checks`), and queues the
request for the project's output checkers, none of them the requester. Once enough approve,
the files go to the requester's outbox with a release record (`record`), downloadable from the
airlock's pages outside the session. Every step is an audit event, and a step that cannot be
recorded is refused.
"""
