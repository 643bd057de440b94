"""Media: decoding clips with PyAV, finding and cropping faces with MTCNN, writing clips.

    from vavl.media import decode, FaceCropper, write_clip
"""
from .decode import DecodedClip, MediaInfo, decode, decode_windows, is_media_file, probe
from .write import write_clip


def __getattr__(name):  # faces pull in facenet-pytorch: import on first use
    if name in ("FaceCropper", "FaceTrack"):
        from . import faces

        return getattr(faces, name)
    raise AttributeError(name)


__all__ = ["DecodedClip", "FaceCropper", "FaceTrack", "MediaInfo", "decode", "decode_windows", "is_media_file",
           "probe", "write_clip"]
