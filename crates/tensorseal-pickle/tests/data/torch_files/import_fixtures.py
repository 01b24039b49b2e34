"""Copies torch-written pickles from the project's fixture corpus into this crate's test data.

    python3 tests/data/torch_files/import_fixtures.py /path/to/tests/fixtures

The corpus (branch `fixtures`, tests/fixtures/torch, written by torch 2.15.0 with CPython
3.11.7; see its README) holds torch.save zip files and legacy-format files, each with an
X.expected.json computed by torch.load. For each zip file this writes <name>/data.pkl (the
pickle), <name>/data/<key> (the storage records, so tests can hash tensors), <name>/byteorder
when the archive has one, and <name>/expected.json (copied unchanged). Legacy files are copied
whole as <name>.pt with <name>.pt.expected.json. The pickle VM never sees a zip: the test
plays the converter's part with these records.
"""

import os
import shutil
import sys
import zipfile

SKIP = {
    "torchscript.pt",        # a TorchScript archive, refused by the converter before any pickle
    "zip_align4096.pt",      # same pickle as zip_bytesio, only the alignment differs
    "zip_pre27_layout.pt",   # same pickle as zip_many_tensors, only the record order differs
    "zip_no_crc.pt",         # CRC-less records: Python's zipfile refuses to read them
}


def main(src):
    here = os.path.dirname(os.path.abspath(__file__))
    torch_dir = os.path.join(src, "torch")
    for name in sorted(os.listdir(torch_dir)):
        path = os.path.join(torch_dir, name)
        if name.endswith(".expected.json") or name in SKIP:
            continue
        if name.startswith("legacy_"):
            shutil.copyfile(path, os.path.join(here, name))
            shutil.copyfile(path + ".expected.json", os.path.join(here, name + ".expected.json"))
            continue
        if not zipfile.is_zipfile(path):
            continue
        stem = name.rsplit(".", 1)[0]
        out = os.path.join(here, stem)
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(os.path.join(out, "data"))
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            prefix = names[0].split("/", 1)[0]
            for member in names:
                rel = member[len(prefix) + 1:]
                if rel == "data.pkl" or rel == "byteorder":
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
