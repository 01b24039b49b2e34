"""``map_location``: where restored torch tensors go, with every form ``torch.load`` accepts.

A tensorseal file holds host bytes and does not record the device a tensor was saved from, so
the *saved location* of every storage is ``"cpu"``: a string or :class:`torch.device` moves
every tensor there, a dict remaps ``"cpu"`` (a ``{"cuda:1": "cuda:0"}`` remap has nothing to
apply to, as for a ``torch.save`` of CPU tensors), and a callable is called as torch calls it,
``map_location(storage, "cpu")`` with the verified ``torch.UntypedStorage`` of each blob, and
returns the storage to use (``None``: keep it on the CPU).

Bytes reach a device only after they are verified: for a CUDA target each blob is read and
hashed into a pinned host buffer (the one host copy), then copied to the device; tensors that
share a blob in the file share it on the device.
"""

from __future__ import annotations

from ._errors import InvalidInputError, UnsupportedError

#: The saved location of every storage in a tensorseal file (see the module docstring).
SAVED_LOCATION = "cpu"


def _device(value, what):
    import torch

    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, torch.device):
        return value
    if not isinstance(value, str):
        raise InvalidInputError(
            f"{what} must be a device (str or torch.device), not {type(value).__name__}")
    try:
        return torch.device(value)
    except (RuntimeError, ValueError) as e:
        raise InvalidInputError(f"{what}: {value!r} is not a device: {e}") from None


def _check_available(device, what):
    import torch

    if device.type == "cuda" and not torch.cuda.is_available():
        # torch.load's own wording for the same situation.
        raise UnsupportedError(
            f"{what}: attempting to restore tensors on a CUDA device ({device}) but "
            f"torch.cuda.is_available() is False; pass map_location='cpu'")
    if device.type == "cuda" and device.index is not None \
            and device.index >= torch.cuda.device_count():
        raise UnsupportedError(
            f"{what}: CUDA device {device.index} requested, {torch.cuda.device_count()} present")


class Placement:
    """Where the blobs of one load go. ``device`` is the single target device (``None`` for
    the CPU default and for a callable); ``pinned`` says whether host buffers should be pinned
    for an asynchronous copy to it."""

    def __init__(self, map_location, framework):
        self.call = None
        self.device = None
        if map_location is None:
            return
        if framework != "torch":
            raise InvalidInputError(
                "map_location places torch tensors; it cannot be used with framework='numpy'")
        import torch

        if isinstance(map_location, dict):
            for k, v in map_location.items():
                if not isinstance(k, str):
                    raise InvalidInputError(
                        f"map_location keys are saved locations (str), not {type(k).__name__}")
                _device(v, f"map_location[{k!r}]")
            target = map_location.get(SAVED_LOCATION)
            if target is not None:
                self.device = _device(target, f"map_location[{SAVED_LOCATION!r}]")
        elif isinstance(map_location, (str, bytes, torch.device)):
            self.device = _device(map_location, "map_location")
        elif callable(map_location):
            self.call = map_location
        else:
            raise InvalidInputError(
                "map_location must be None, a str, a torch.device, a dict of saved location "
                f"to device, or a callable(storage, location), not {type(map_location).__name__}")
        if self.device is not None:
            _check_available(self.device, "map_location")
            if self.device.type == "cpu":
                self.device = None  # where blobs are read anyway

    @property
    def pinned(self) -> bool:
        return self.device is not None and self.device.type == "cuda"

    def empty_device(self):
        """The device of tensors without bytes (empty tensors have no blob)."""
        return self.device

    def place(self, buffers, torch_blobs):
        """Moves each verified torch buffer (a flat uint8 tensor) in ``torch_blobs`` to where
        it goes; numpy buffers stay. Returns the new ``{blob: buffer}``."""
        if self.call is None and self.device is None:
            return buffers
        import torch

        placed = dict(buffers)
        for blob in torch_blobs:
            buf = buffers[blob]
            if self.call is not None:
                placed[blob] = self._called(buf, blob)
            else:
                placed[blob] = buf.to(self.device, non_blocking=self.pinned)
        if self.pinned:
            # The pinned host buffers are released when this returns: finish the copies first.
            torch.cuda.synchronize(self.device)
        return placed

    def _called(self, buf, blob):
        import torch

        storage = buf.untyped_storage()
        result = self.call(storage, SAVED_LOCATION)
        if result is None:
            return buf
        if isinstance(result, torch.storage.TypedStorage):
            result = result._untyped_storage
        if not isinstance(result, torch.UntypedStorage):
            raise UnsupportedError(
                f"map_location(storage, {SAVED_LOCATION!r}) for blob {blob} returned "
                f"{type(result).__name__}, not a storage or None")
        if result.nbytes() != storage.nbytes():
            raise UnsupportedError(
                f"map_location(storage, {SAVED_LOCATION!r}) for blob {blob} returned a storage "
                f"of {result.nbytes()} bytes, not {storage.nbytes()}")
        return torch.empty(0, dtype=torch.uint8, device=result.device).set_(result)
