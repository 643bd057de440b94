"""Media: decoding clips with PyAV, finding and cropping faces with MTCNN, writing clips.

    from vavl.media import decode, FaceCropper, write_clip
"""
from .write import write_clip

__all__ = ["write_clip"]
