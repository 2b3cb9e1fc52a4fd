"""The job service's loop: start queued jobs as their turn comes, watch running ones, end them.

Every `jobs.check_interval` seconds, and at once when a job is submitted or cancelled, it:

- stops a running job that was cancelled, whose project or membership is no longer in force,
  that ran past `jobs.time_limit`, or whose firewall is not as it was loaded (fail closed);
- ends a queued job whose project or membership is no longer in force;
- starts the jobs the book says may start (`JobBook.startable`).

A job's end is recorded once its process has exited and its sandbox is gone, with its status,
the reason and what it left in its folder. When the service starts, jobs the book says are
running belonged to an earlier run, whose processes died with it: they are recorded as failed.

While the database is unavailable the loop says so once and tries again at its interval:
running jobs go on, none starts, and each end is recorded once the database is back. A job
whose start the database took although its answer was lost (its sandbox was removed, so it
never ran) is found running in the book without a process, and recorded as failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .. import sandbox
from ..core.jobs import CANCELLED, FAILED, QUEUED, RUNNING, STOPPED, SUCCEEDED, JobBook
from ..core.registry import DatabaseUnavailable, Outage, Registry, RegistryError
from .launcher import LOG_NAME, JobLauncher, LaunchError, RunningJob
from .outputs import manifest

log = logging.getLogger("enclave.jobs")
LOG_TAIL_BYTES = 4096


def not_in_force(user: str, project: str) -> str:
    return f"the membership of {user} in project '{project}', or the project, is not in force"


def last_line(folder, name: str = LOG_NAME) -> str:
    """The last line a job wrote to its log (the error, when it failed)."""
    try:
        with open(folder / name, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - LOG_TAIL_BYTES))
            lines = handle.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


class Dispatcher:
    def __init__(self, site, registry: Registry, book: JobBook, launcher: JobLauncher):
        self.site = site
        self.registry = registry
        self.book = book
        self.launcher = launcher
        self.running: dict[int, RunningJob] = {}
        self.wake = asyncio.Event()
        self.outage = Outage("The job service", log.warning)

    async def recover(self) -> None:
        """End what an earlier run of the service left."""
        for number in await asyncio.to_thread(self.launcher.remove_leftovers):
            log.warning("Removed sandbox %d, left by an earlier run", number)
        for job in await asyncio.to_thread(self.book.jobs_of, None, (RUNNING,)):
            await asyncio.to_thread(
                self.book.ended, job["id"], FAILED, "the job service stopped while the job ran"
            )

    async def run(self) -> None:
        interval = self.site.jobs.check_interval
        recovered = False
        while True:
            try:
                if not recovered:
                    await self.recover()
                    recovered = True
                await self.tick()
                self.outage.back()
            except DatabaseUnavailable as error:
                self.outage.failed(error)
            except RegistryError as error:
                log.error("Checking jobs failed: %s", error)
            except Exception:
                log.exception("Checking jobs failed")
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), interval)

    async def stop_all(self, reason: str) -> None:
        """Stop every running job (the service is stopping) and record their ends."""
        for job in list(self.running.values()):
            await self.stop(job, FAILED, reason)
        await asyncio.gather(*(t for job in self.running.values() for t in job.tasks))

    # -- one round ----------------------------------------------------------------------------

    async def tick(self) -> None:
        in_force = await asyncio.to_thread(self.registry.in_force)
        waiting = await asyncio.to_thread(self.book.jobs_of, None, (QUEUED, RUNNING))
        now = asyncio.get_running_loop().time()
        for job in waiting:
            running = self.running.get(job["id"])
            allowed = (job["submitter"], job["project"]) in in_force
            if job["status"] == QUEUED and not allowed:
                reason = not_in_force(job["submitter"], job["project"])
                await asyncio.to_thread(self.book.ended, job["id"], STOPPED, reason)
            if job["status"] == RUNNING and running is None:
                reason = "its start was not confirmed by the database, so it did not run"
                await asyncio.to_thread(self.book.ended, job["id"], FAILED, reason)
            if running is None or running.stop is not None:
                continue
            if job["cancelled_by"]:
                await self.stop(running, CANCELLED, f"cancelled by {job['cancelled_by']}")
            elif not allowed:
                await self.stop(running, STOPPED, not_in_force(job["submitter"], job["project"]))
            elif now - running.started > self.site.jobs.time_limit:
                limit = self.site.jobs.time_limit
                await self.stop(running, STOPPED, f"it ran past the site's limit of {limit} s")
            elif not await asyncio.to_thread(self._firewall_holds, running):
                await self.stop(running, STOPPED, "its firewall was altered (failed closed)")
        for start in await asyncio.to_thread(self.book.startable):
            await self._start(start, in_force)

    def _firewall_holds(self, running: RunningJob) -> bool:
        try:
            running.box.verify(running.box.firewall_fingerprint)
        except sandbox.SandboxError:
            return False
        return True

    async def _start(self, start, in_force) -> None:
        job = await asyncio.to_thread(self.book.show, start.job_id)
        project = in_force.get((job["submitter"], job["project"]))
        if project is None:
            return  # ended above, on the next round at the latest
        try:
            running = await self.launcher.launch(start, project, job)
        except (LaunchError, OSError) as error:
            log.warning("Job %d could not start: %s", start.job_id, error)
            await asyncio.to_thread(self.book.ended, start.job_id, FAILED, f"not started: {error}")
            return
        except RegistryError as error:
            # Its start could not be recorded: it stays queued, and is tried again.
            log.error("Job %d was not started: %s", start.job_id, error)
            return
        self.running[start.job_id] = running
        running.tasks.append(asyncio.create_task(self._watch(running)))
        log.info("Job %d started in sandbox %d", start.job_id, running.box.spec.number)

    # -- ending -------------------------------------------------------------------------------

    async def stop(self, running: RunningJob, status: str, reason: str) -> None:
        """Stop a running job: every process of its sandbox is killed; `_watch` records it."""
        running.stop = (status, reason)
        log.info("Stopping job %d: %s", running.job_id, reason)
        await running.remove_sandbox()

    async def _watch(self, running: RunningJob) -> None:
        exit_status = await running.process.wait()
        await running.remove_sandbox()
        if running.stop is not None:
            status, reason = running.stop
        elif exit_status == 0:
            status, reason = SUCCEEDED, "finished"
        else:
            status = FAILED
            reason = f"exit status {exit_status}: {last_line(running.folder) or '(no output)'}"
        outputs = await asyncio.to_thread(manifest, running.folder)
        told = False
        while True:
            try:
                await asyncio.to_thread(
                    self.book.ended, running.job_id, status, reason, exit_status, outputs
                )
                break
            except RegistryError as error:
                if not told:  # once, not at every try
                    log.error("Job %d's end is not recorded yet: %s", running.job_id, error)
                    told = True
                await asyncio.sleep(self.site.jobs.check_interval)
        del self.running[running.job_id]
        self.wake.set()
