"""The zoo's names are known without importing the zoo: a mistake is refused before torch."""

from __future__ import annotations

import subprocess
import sys


def test_the_zoo_names_known_without_importing_it_are_the_registered_ones() -> None:
    from cnnbench.models import get_spec, list_models
    from cnnbench.models.registry import ZOO_NAMES
    from cnnbench.models.user import FAMILY

    registered = sorted(n for n in list_models() if get_spec(n).family != FAMILY)
    assert registered == sorted(ZOO_NAMES)  # the order follows which module imported first


def test_an_unknown_model_is_refused_before_torch_is_imported() -> None:
    code = ("import sys\nfrom cnnbench.models import get_spec\ntry:\n    get_spec('lenet6')\n"
            "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
            "print('torch' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()  # fmt: skip
    assert out[0].startswith("UnknownNameError unknown model 'lenet6': did you mean lenet5")
    assert out[-1] == "False"
