"""Generated inputs for bench/accuracy.py's workloads (all local: no network)."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
from pathlib import Path


def make_c_project(directory: Path, files: int) -> None:
    """Generated C sources that take gcc -O2 a noticeable moment each, and a Makefile."""
    directory.mkdir(parents=True, exist_ok=True)
    objs = []
    for i in range(files):
        body = "\n".join(
            f"static double f{i}_{j}(double x) {{ double s = 0; for (int k = 0; k < {j + 3}; k++) "
            f"s += x * k / (k + {j + 1}.0); return s; }}"
            for j in range(100)
        )
        calls = " + ".join(f"f{i}_{j}(x)" for j in range(100))
        (directory / f"unit{i}.c").write_text(
            f"{body}\ndouble unit{i}(double x) {{ return {calls}; }}\n"
        )
        objs.append(f"unit{i}.o")
    decls = "\n".join(f"double unit{i}(double);" for i in range(files))
    total = " + ".join(f"unit{i}(1.0)" for i in range(files))
    (directory / "main.c").write_text(
        f'#include <stdio.h>\n{decls}\nint main(void) {{ printf("%f\\n", {total}); return 0; }}\n'
    )
    (directory / "Makefile").write_text(
        textwrap.dedent(
            f"""\
            CFLAGS = -O2
            prog: main.o {" ".join(objs)}
            \t$(CC) -o $@ $^
            %.o: %.c
            \t$(CC) $(CFLAGS) -c -o $@ $<
            clean:
            \trm -f *.o prog
            """
        )
    )


def make_py_files(directory: Path, files: int) -> None:
    """Python modules of a few hundred lines each, for py_compile."""
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        funcs = "\n\n".join(
            f"def f{j}(x, y={j}):\n"
            f"    items = [x * k + y for k in range({j + 2})]\n"
            f"    if sum(items) > {j * 7}:\n"
            f"        return {{'k{j}': items, 'n': len(items)}}\n"
            f"    return [str(v) for v in items if v % 3]\n"
            for j in range(40)
        )
        (directory / f"mod{i}.py").write_text(f'"""Module {i}."""\n\n{funcs}')


def make_c_extension(directory: Path) -> None:
    """A setuptools project with one C extension module."""
    directory.mkdir(parents=True, exist_ok=True)
    funcs = "\n".join(
        f"static double g{j}(double x) {{ double s = 0; for (int k = 0; k < {j + 5}; k++) "
        f"s += x * k / (k + {j + 1}.0); return s; }}"
        for j in range(400)
    )
    calls = " + ".join(f"g{j}(x)" for j in range(400))
    (directory / "benchext.c").write_text(
        textwrap.dedent(
            """\
            #define PY_SSIZE_T_CLEAN
            #include <Python.h>
            """
        )
        + funcs
        + textwrap.dedent(
            f"""
            static PyObject *total(PyObject *self, PyObject *arg) {{
                double x = PyFloat_AsDouble(arg);
                return PyFloat_FromDouble({calls});
            }}
            static PyMethodDef methods[] = {{{{"total", total, METH_O, NULL}}, {{NULL}}}};
            static struct PyModuleDef module = {{PyModuleDef_HEAD_INIT, "benchext", NULL, -1, methods}};
            PyMODINIT_FUNC PyInit_benchext(void) {{ return PyModule_Create(&module); }}
            """
        )
    )
    (directory / "setup.py").write_text(
        textwrap.dedent(
            """\
            from setuptools import Extension, setup

            setup(
                name="benchext",
                version="1.0",
                ext_modules=[Extension("benchext", ["benchext.c"], extra_compile_args=["-O2"])],
            )
            """
        )
    )


def make_text(path: Path, mib: int) -> None:
    """Text of words from a fixed vocabulary: xz works at it, not too fast, not too slow."""
    rng = random.Random(12)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(5000)]
    with path.open("wb") as f:
        for _ in range(mib):
            f.write((" ".join(rng.choices(vocab, k=180_000)) + "\n").encode()[: 1 << 20])


def wheel_python() -> tuple[str | None, str]:
    """An interpreter that can `pip wheel --no-build-isolation` a setuptools project.

    The venv's own first (setuptools importable, and bdist_wheel: setuptools >= 70.1 has
    it, older needs the wheel package); else the system python3 with its own. Returns
    (interpreter or None, why).
    """
    probe = (
        "import setuptools, pip\n"
        "v = tuple(int(p) for p in setuptools.__version__.split('.')[:2])\n"
        "if v < (70, 1):\n"
        "    import wheel\n"
        "print(setuptools.__version__)\n"
    )
    reasons = []
    for python in (sys.executable, "/usr/bin/python3"):
        done = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return python, f"{python}: setuptools {done.stdout.strip()}"
        last = (done.stderr.strip().splitlines() or ["not runnable"])[-1]
        reasons.append(f"{python}: {last}")
    return None, "; ".join(reasons)
