"""The from-scratch exercise is the solution notebook with its solutions taken out.

Every line between ``# BEGIN SOLUTION`` and ``# END SOLUTION`` in a code cell of ``from_scratch_solution.ipynb`` is
replaced by one ``raise NotImplementedError(...)`` at the same indent; the rest is the same, cell for cell.

    python examples/notebooks/exercise.py     # rewrites from_scratch.ipynb from the solution

``tests/test_notebooks.py`` checks that the committed exercise is what this makes, that the solution runs, and that
the exercise stops at the first gap with NotImplementedError.
"""

import copy
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOLUTION, EXERCISE = HERE / "from_scratch_solution.ipynb", HERE / "from_scratch.ipynb"
BLOCK = re.compile(r"^( *)# BEGIN SOLUTION\n.*?^ *# END SOLUTION\n", re.S | re.M)


def strip_solutions(nb):
    """A copy of notebook ``nb`` (nbformat) with every solution block replaced by a ``raise``."""
    out = copy.deepcopy(nb)
    for cell in out.cells:
        if cell.cell_type == "code":
            cell.source = BLOCK.sub(lambda m: f'{m.group(1)}raise NotImplementedError("your code here")\n',
                                    cell.source + "\n").rstrip("\n")
    out.metadata.pop("title", None)
    return out


def main():
    import nbformat

    nbformat.write(strip_solutions(nbformat.read(SOLUTION, as_version=4)), EXERCISE)
    print(f"wrote {EXERCISE}")


if __name__ == "__main__":
    main()
