"""The project registry: projects, memberships and dataset grants, with expiry, and the
reconciler that makes running sessions follow them.

It replaces the seed list of the site configuration (which seeds an empty registry). The hub's
spawner asks it who may start what; admins change it through `enclave project ...`.
"""
