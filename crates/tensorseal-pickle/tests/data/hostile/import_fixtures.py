"""Copies the pickle-level hostile inputs of the project's fixture corpus into this crate.

    python3 tests/data/hostile/import_fixtures.py /path/to/tests/fixtures

From tests/fixtures/hostile (branch `fixtures`, built from opcode bytes by hostile.py, never
unpickled): p_*.pkl (plain pickles) and l_*.pt (legacy five-pickle files) are copied with
their X.expected.json; for t_*.pt and z_data_pkl_os_system.pt (torch zips whose tensor
metadata or pickle is hostile) the data.pkl and storage records are unpacked into <name>/ like
tests/data/torch_files. Expected outcomes are copied unchanged.
"""

import os
import shutil
import sys
import zipfile


def main(src):
    here = os.path.dirname(os.path.abspath(__file__))
    hostile = os.path.join(src, "hostile")
    for name in sorted(os.listdir(hostile)):
        path = os.path.join(hostile, name)
        if name.endswith(".expected.json"):
            continue
        if name.startswith(("p_", "l_")):
            shutil.copyfile(path, os.path.join(here, name))
            shutil.copyfile(path + ".expected.json", os.path.join(here, name + ".expected.json"))
        elif name.startswith("t_") or name == "z_data_pkl_os_system.pt":
            out = os.path.join(here, name.rsplit(".", 1)[0])
            shutil.rmtree(out, ignore_errors=True)
            os.makedirs(os.path.join(out, "data"))
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
                prefix = names[0].split("/", 1)[0]
                for member in names:
                    rel = member[len(prefix) + 1:]
                    if rel == "data.pkl":
                        target = os.path.join(out, rel)
                    elif rel.startswith("data/"):
                        target = os.path.join(out, "data", rel[len("data/"):])
                    else:
                        continue
                    with open(target, "wb") as f:
                        f.write(zf.read(member))
            shutil.copyfile(path + ".expected.json", os.path.join(out, "expected.json"))


if __name__ == "__main__":
    main(sys.argv[1])
