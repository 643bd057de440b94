"""Model families. Importing this package registers every config/model with the transformers
Auto classes and every zoo entry with `vavl.registry`."""
import importlib
import importlib.util

# each module registers its classes when imported
FAMILIES = (
    "vavl.models.auxformer",
    "vavl.models.vavl",
    "vavl.models.mult",
    "vavl.models.baselines",
    "vavl.models.classic",
    "vavl.models.correspondence",
    "vavl.models.with_encoders",  # full models (encoders + fusion): AutoModel.from_pretrained(dir)
)

for _name in FAMILIES:
    if importlib.util.find_spec(_name) is not None:
        importlib.import_module(_name)
