"""The bottom layer: errors a user can act on, label constants, device checks and what batch jobs share.
Nothing here imports another vavl folder."""
