"""A plugin source for tests that count what `generate` decoded: every call appends one line (the number of
prompts it decoded) to the file named by $WB_RECORD, then sleeps $WB_SLEEP seconds (default 0) so that a test
can kill the process while it is still decoding."""

RECORDER = '''
import os, time
from workbench.decoding.registry import hookimpl

class Recorder:
    @hookimpl
    def on_generation_end(self, results):
        with open(os.environ["WB_RECORD"], "a") as f:
            f.write(f"{len(results)}\\n")
        time.sleep(float(os.environ.get("WB_SLEEP", "0")))
'''
