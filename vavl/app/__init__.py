"""The web app (`vavl app`): a clip in, the model's answer out, in a browser.

`scoring.py` holds what the app computes (no Gradio: the answer of `vavl predict` for the clip, the
probabilities of each head, the face crops, the answers with a modality removed); `ui.py` lays it out
with Gradio (the extra `vavl[app]`), imported only when the app is built; `space.py` writes a folder
that runs the app as a Hugging Face Space.
"""
