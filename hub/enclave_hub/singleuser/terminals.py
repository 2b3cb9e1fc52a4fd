"""JupyterLab's terminals, recorded: each line typed is in the audit log before the shell gets
the key that runs it.

Keys are passed to the shell as they are typed (so that it echoes them); a chunk holding a line
end, and any line grown past `LINE_LIMIT`, is first recorded as `terminal.input` with all that
was typed since the last record. What is recorded is the input as typed: keys that recall the
shell's history or complete a name appear as those keys. A line that cannot be recorded is not
run: the shell gets Ctrl-C instead, and the terminal says why. Where a profile has terminals
`off`, the server runs without them.
"""

from __future__ import annotations

import json

from jupyter_server_terminals.app import TerminalsExtensionApp
from jupyter_server_terminals.handlers import TermSocket

from .recording import RECORDER_SETTING

LINE_LIMIT = 4096
INTERRUPT = "\x03"


class RecordedTermSocket(TermSocket):
    """A terminal's websocket that records each line before passing its end on."""

    typed = ""

    async def on_message(self, message):
        command = json.loads(message)
        if command[0] == "stdin" and isinstance(command[1], str):
            self.typed += command[1]
            if "\r" in command[1] or "\n" in command[1] or len(self.typed) > LINE_LIMIT:
                line, self.typed = self.typed, ""
                reason = await self.settings[RECORDER_SETTING].record(
                    action="terminal.input", target=self.term_name, outcome="ok", code=line
                )
                if reason is not None:
                    self.write_message(
                        json.dumps(
                            [
                                "stdout",
                                "\r\nEnclave did not run this line: it could not be recorded in "
                                f"the audit log ({reason}).\r\n",
                            ]
                        )
                    )
                    message = json.dumps(["stdin", INTERRUPT])
        await super().on_message(message)


class RecordedTerminals(TerminalsExtensionApp):
    """jupyter_server_terminals with the recorded websocket (it replaces that extension)."""

    name = "enclave_terminals"

    def initialize_handlers(self) -> None:
        super().initialize_handlers()
        self.handlers = [_recorded(rule) for rule in self.handlers]


def _recorded(rule: tuple) -> tuple:
    pattern, handler, *rest = rule
    return (pattern, RecordedTermSocket, *rest) if handler is TermSocket else rule


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": __name__, "app": RecordedTerminals}]
