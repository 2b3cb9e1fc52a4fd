"""Who may use the inquiry portal: members of `inquiry.groups` (the hub lets only them sign
in to the service at all; checked again here), members of no project included."""

from __future__ import annotations

import asyncio

from tornado import web

from enclave.catalog import CatalogError

from ..core.audit_client import AuditRefused
from ..core.client_address import client_address
from ..core.service_auth import SignedInHandler, registry_refusals
from .counts import CommonsCounts, Criteria
from .disclosure import ShownCount

LOOPBACK = "127.0.0.1"  # where the proxy's requests come from, on one machine


class InquiryHandler(SignedInHandler):
    """A request to the inquiry service by a signed-in person of an allowed group."""

    def prepare(self) -> None:
        if self.current_user is None:
            return  # HubOAuthenticated sends the person to sign in
        groups = set(self.current_user.get("groups") or ())
        allowed = self.settings["site"].inquiry.groups
        if not groups & set(allowed):
            raise web.HTTPError(
                403, f"the data inquiry portal is for members of {', '.join(allowed)}"
            )

    async def apply(self, fields: dict) -> dict:
        """Submit the person's application; 400 naming the field that is wrong, 409 when the
        project id is taken, 503 while the database is unavailable."""
        with registry_refusals():
            return await asyncio.to_thread(
                self.settings["applications"].submit, self.current_user["name"], **fields
            )

    def my_applications(self) -> list[dict]:
        return self.settings["applications"].of(self.current_user["name"])

    async def described(self, dataset_id: str) -> dict:
        """A dataset of the catalogue with its data dictionary; 404 when there is none."""
        try:
            return await asyncio.to_thread(self.settings["catalogue"].dataset, dataset_id)
        except CatalogError as error:
            raise web.HTTPError(404, str(error)) from None

    async def counted(self, criteria: Criteria) -> ShownCount:
        """The count of persons meeting `criteria` as it may be shown: asked only within the
        person's rate, recorded before it is answered (429 beyond the rate, 503 when the
        audit log cannot record it)."""
        person = self.current_user["name"]
        wait = self.settings["rate_limit"].admit(person)
        if wait:
            await self._record(criteria, "refused: rate limit", None)
            limit = self.settings["rate_limit"].per_minute
            raise web.HTTPError(
                429, f"at most {limit} counts a minute: try again in {int(wait) + 1} s"
            )
        counts: CommonsCounts = self.settings["counts"]
        count = await asyncio.to_thread(counts.count, criteria)
        shown = self.settings["disclosure"].shown(count)
        await self._record(criteria, "answered", shown)
        return shown

    async def _record(self, criteria: Criteria, outcome: str, shown: ShownCount | None) -> None:
        event = {
            "action": "inquiry.count",
            "actor": self.current_user["name"],
            "outcome": outcome,
            "source": client_address(self.request, LOOPBACK),
            "detail": {"criteria": criteria.as_dict(), "shown": shown.text if shown else None},
        }
        try:
            await asyncio.to_thread(self.settings["record"], event)
        except AuditRefused as error:
            raise web.HTTPError(
                503, f"the query could not be recorded, so it is not answered ({error})"
            ) from None
