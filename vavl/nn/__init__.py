"""Building blocks of the models: attention (one module, several implementations), layers, losses,
and the optional compiled CPU attention kernel (`native/`)."""
