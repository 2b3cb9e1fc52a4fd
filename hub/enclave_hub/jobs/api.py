"""The job service's REST API (JSON), for sessions, with their own token.

- `POST api/jobs` `{"name": "analysis.ipynb", "code": <base64>, "profile": ..., "parameters":
  {...}}`: queue a job of the session's project; answers 201 with the job and its place.
- `GET api/jobs`: the project's jobs, newest first, each waiting one with its place in the
  queue and what it waits for; and the profiles the project's jobs may use.
- `GET api/jobs/<id>`: one of them.
- `POST api/jobs/<id>/cancel`: cancel one's own job, waiting or running.

Errors are `{"error": "..."}` with 400 (bad input), 403, 404, 409 (it cannot be done now) or
503 (the database is unavailable).
"""

from __future__ import annotations

import asyncio
import base64
import binascii

from tornado import web

from ..core.jobs import JobBook, Submission
from ..core.service_auth import JSONAPI, SessionHandler


class JobsHandler(JSONAPI, SessionHandler):
    @property
    def book(self) -> JobBook:
        return self.settings["book"]

    def wake(self) -> None:
        self.settings["wake"]()

    async def own_job(self, job_id: str) -> dict:
        job = await self.act(self.book.show, job_id, self.project)
        if job["submitter"] != self.user:
            raise web.HTTPError(403, f"job {job_id} is {job['submitter']}'s to cancel")
        return job


class JobsAPI(JobsHandler):
    async def get(self) -> None:
        found = await self.act(self.book.jobs_of, self.project)
        profiles = await self.act(self.book.profiles_for, self.user, self.project)
        self.finish({"jobs": found, "profiles": profiles})

    async def post(self) -> None:
        body = self.json_body()
        try:
            code = base64.b64decode(str(body.get("code", "")), validate=True)
        except (binascii.Error, ValueError):
            raise web.HTTPError(400, "code: not base64") from None
        session = await asyncio.to_thread(
            self.settings["hub_sessions"].run_of, self.user, self.project
        )
        submission = Submission(
            submitter=self.user,
            project=self.project,
            name=str(body.get("name", "")),
            code=code,
            profile=body.get("profile") or None,
            parameters={} if body.get("parameters") is None else body["parameters"],
            session=session,
        )
        made = await self.act(self.book.submit, submission)
        self.wake()
        self.set_status(201)
        self.finish(made)


class JobAPI(JobsHandler):
    async def get(self, job_id: str) -> None:
        self.finish(await self.act(self.book.show, job_id, self.project))


class CancelAPI(JobsHandler):
    async def post(self, job_id: str) -> None:
        await self.own_job(job_id)
        cancelled = await self.act(self.book.cancel, self.user, job_id, self.project)
        self.wake()
        self.finish(cancelled)


def api_handlers(prefix: str) -> list[tuple]:
    return [
        (prefix + "api/jobs", JobsAPI),
        (prefix + r"api/jobs/([0-9]+)", JobAPI),
        (prefix + r"api/jobs/([0-9]+)/cancel", CancelAPI),
    ]
