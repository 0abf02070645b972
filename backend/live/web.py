"""The browser app: upload a photo, draw, or stream the webcam, through the live app's pipeline.

Built on Gradio, whose components cover what the page needs (an upload box, a sketchpad for
mouse and touch with undo and clear, webcam streaming, probability bars), so the page has no
JavaScript of ours. Every request goes through the same stages as ``camera_inferencer.py``:
``Pipeline(...).process`` -> (tracking, webcam only) -> ``draw_overlay``, and the JSON is the
JSONL record. What a request does lives in ``web_reading.py``, apart from Gradio; each tab keeps
its own results and its own webcam tracker in Gradio session state.

    python camera_inferencer.py --web            # http://127.0.0.1:7860
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home; the app works offline

import cv2
import gradio as gr
import numpy as np

from backend.errors import UserError, first_line
from backend.live.app import Interrupted, signals_raise
from backend.live.overlay import HudInfo
from backend.live.sources import to_bgr8
from backend.live.web_reading import (MAX_UPLOAD_MB, ROOT, Models, Reader, Reading, Webcam, decode_upload, digit_views,
                                      picked_at, read_once, save_json, summary)

# --- the page -----------------------------------------------------------------------------------

ATTENTION_TEXT = """\
**What the attention map shows.** The transformer cuts the 28x28 digit into a grid of patches
(the token grid in the table) and reads the class from a CLS token that attends to them.
The map is the *attention rollout*: every layer's attention, averaged over heads, with the
skip connections added, multiplied through the layers, so it says how much each patch fed the
CLS token in the end (Abnar & Zuidema, 2020), scaled so that its peak is red. A digit read for
the right reasons lights up on its strokes, most on the parts that tell it from its look-alikes;
attention on empty paper or on a neighbour's ink is a reason to doubt the reading. The overlay
tints the paper under each digit with the same map."""


def about_markdown(models: Models) -> str:
    rows = ["| model | file | params | stem | tokens | width | depth | heads | MLP |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in models.recognizers.items():
        c = r.model.cfg
        stem = f"{c.stem_channels} -> {2 * c.stem_channels} ch, /{c.stem_stride}" if c.stem_channels else "none"
        rows.append(f"| `{name}` | `{r.name}` | {r.params:,} | {stem} | {c.grid}x{c.grid} + CLS | {c.embed_dim} | "
                    f"{c.depth} | {c.num_heads} | {c.mlp_ratio:g}x |")
    card = ROOT / "artifacts" / "MODEL_CARD.md"
    card_text = card.read_text(encoding="utf-8") if card.exists() else ""
    card_text = card_text.replace("\n# ", "\n### ").replace("\n## ", "\n#### ")
    if card_text.startswith("# "):
        card_text = "### " + card_text[2:]
    return (
        "## How a picture is read\n"
        "Every tab runs the live app's pipeline: an OpenCV detector finds each digit on the page, each "
        "one is turned into an MNIST digit (white on black, fitted into 20x20, centred in 28x28), and a "
        "Vision Transformer written from scratch in PyTorch reads them all in one batch. Digits are "
        "read back in lines, left to right; on the webcam they are tracked from frame to frame and "
        "their probabilities smoothed.\n\n"
        "## Architecture\n"
        "A small convolutional stem (two 3x3 convs), a strided-convolution patch embedding, a "
        "learnable CLS token and position embeddings, pre-norm transformer blocks and a linear head "
        "on the CLS token (`backend/model/vit.py`).\n\n" + "\n".join(rows) + "\n\n" + ATTENTION_TEXT +
        "\n\n## Model cards\n" + card_text)


def build_app(models: Models, tmp_dir: str | None = None) -> gr.Blocks:
    tmp_dir = tmp_dir or tempfile.mkdtemp(prefix="digits_web_")

    def upload(path, model, request: gr.Request):
        t0 = time.perf_counter()
        if not path:
            return _nothing("Upload a photo of handwritten digits.")
        try:
            frame = decode_upload(path)
        except UserError as e:
            return _nothing(f"**Cannot read this file:** {e}")
        return _answer(model, frame, Path(path).name, t0, f"{request.session_hash}-upload")

    def draw(sketch, model, request: gr.Request):
        t0 = time.perf_counter()
        img = None if sketch is None else sketch.get("composite")
        if img is None or img.size == 0 or (img.shape[-1] == 4 and not img[..., 3].any()):
            return _nothing("Draw digits with the mouse or a finger.")
        frame = to_bgr8(cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA))  # strokes on a transparent canvas: over white
        return _answer(model, frame, "sketchpad", t0, f"{request.session_hash}-draw")

    def _nothing(text: str):
        return None, text, None, None, None, gr.update(choices=[], value=None)

    def _answer(model: str, frame: np.ndarray, name: str, t0: float, json_name: str):
        shown, reading, lines = read_once(models.pipeline(model), frame, name)
        ms = (time.perf_counter() - t0) * 1e3
        return (shown, summary(lines, len(reading.dets), ms, model), reading, json.dumps(reading.record),
                save_json(reading.record, Path(tmp_dir) / f"{json_name}.json"),
                gr.update(choices=reading.choices(), value=0 if len(reading.dets) else None))

    def webcam(frame, model, state: Webcam | None):
        if frame is None:
            return None, state, ""
        if state is None or state.model != model:
            state = Webcam(model, Reader(models.pipeline(model), "webcam", track=True))
        now = time.perf_counter()
        if state.last and now - state.last < 5.0:  # a pause (tab hidden, camera stopped) restarts the average
            state.fps = 0.9 * state.fps + 0.1 / (now - state.last) if state.fps else 1.0 / (now - state.last)
        state.last = now
        r = models.recognizers[model]
        hud = HudInfo(fps=state.fps, device=f"{r.device} {r.backend}", model=f"{model} ({r.params / 1e6:.2f} M params)")
        shown, _, lines = state.reader.read(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), hud)
        text = f"{state.fps:.1f} frames/s  \n" + ("  \n".join(f"`{line}`" for line in lines) or "no digits")
        return shown, state, text

    # Gradio's copies of uploads and results are deleted after an hour (checked every 15 minutes).
    with gr.Blocks(title="Digits Transformer", delete_cache=(900, 3600)) as app:
        with gr.Row(equal_height=True):
            gr.Markdown("# Digits Transformer\nHandwritten digits read by a Vision Transformer: "
                        "upload a photo, draw, or point your webcam at a page.")
            model = gr.Radio(models.names, value=models.names[0], label="Model", scale=0)
        with gr.Tab("Upload", id="upload"):
            with gr.Row():
                with gr.Column(scale=1):
                    file = gr.File(label=f"Photo (JPEG, PNG, WebP; up to {MAX_UPLOAD_MB} MB)", file_types=["image"],
                                   elem_id="upload-file")
                    status = gr.Markdown("Upload a photo of handwritten digits.", elem_id="upload-status")
                with gr.Column(scale=2):
                    shown = gr.Image(show_label=False, type="numpy", format="jpeg",
                                     interactive=False, buttons=["download", "fullscreen"], elem_id="upload-result")
            up_outputs = _details(shown, status, "upload")
        with gr.Tab("Draw", id="draw"):
            with gr.Row():
                with gr.Column(scale=3):
                    pad = gr.Sketchpad(label="Draw several digits (undo and clear are in the toolbar)",
                                       canvas_size=(960, 400), type="numpy", layers=False, transforms=(),
                                       brush=gr.Brush(colors=["#000000"], color_mode="fixed", default_size=12),
                                       elem_id="draw-pad")
                    d_status = gr.Markdown("Draw digits with the mouse or a finger.", elem_id="draw-status")
                with gr.Column(scale=2):
                    d_shown = gr.Image(show_label=False, type="numpy", format="jpeg", interactive=False,
                                       buttons=["download", "fullscreen"], elem_id="draw-result")
            draw_outputs = _details(d_shown, d_status, "draw")
        with gr.Tab("Webcam", id="webcam"):
            with gr.Row():
                cam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Camera", elem_id="cam-in",
                               webcam_options=gr.WebcamOptions(mirror=False))  # a mirrored page reads backwards
                cam_out = gr.Image(show_label=False, type="numpy", format="jpeg", interactive=False,
                                   buttons=["fullscreen"], elem_id="cam-result")
            cam_text = gr.Markdown(elem_id="cam-status")
            cam_state = gr.State()
        with gr.Tab("About", id="about"):
            gr.Markdown(about_markdown(models), elem_id="about")

        file.change(upload, [file, model], up_outputs)
        pad.change(draw, [pad, model], draw_outputs, trigger_mode="always_last", show_progress="hidden")
        model.change(upload, [file, model], up_outputs).then(draw, [pad, model], draw_outputs)
        cam.stream(webcam, [cam, model, cam_state], [cam_out, cam_state, cam_text], stream_every=0.04,
                   concurrency_limit=4, show_progress="hidden")
    return app


def _details(shown: gr.Image, status: gr.Markdown, key: str) -> list:
    """The panel under a result: the digits to pick from, the picked digit's model input,
    probabilities and attention, and the JSON record to copy or download."""
    reading = gr.State()
    with gr.Row():
        pick = gr.Dropdown(label="Digit", choices=[], type="value", elem_id=f"{key}-pick", scale=1)
        crop = gr.Image(label="Model input 28x28", type="numpy", format="png", interactive=False, buttons=[],
                        height=200, scale=1, elem_id=f"{key}-crop")
        probs = gr.Label(label="Probabilities", num_top_classes=10, scale=2, elem_id=f"{key}-probs")
        attn = gr.Image(label="Attention rollout", type="numpy", format="png", interactive=False, buttons=[],
                        height=200, scale=1, elem_id=f"{key}-attn")
    with gr.Accordion("JSON (as in --jsonl)", open=False):
        code = gr.Code(language="json", label="Record", elem_id=f"{key}-json")
        download = gr.File(label="Download", elem_id=f"{key}-download")
    pick.change(digit_views, [reading, pick], [crop, probs, attn])

    def on_select(r: Reading | None, evt: gr.SelectData):
        i = picked_at(r, *evt.index[:2]) if evt.index else None
        return gr.update(value=i)

    shown.select(on_select, [reading], [pick])
    return [shown, status, reading, code, download, pick]


def serve(models: Models, host: str = "127.0.0.1", port: int = 7860, block: bool = True) -> gr.Blocks:
    """Start the app; returns it (serving on a thread) when `block` is False. UserError when the
    address cannot be used."""
    if not 0 < port < 65536:
        raise UserError(f"--port {port}: a port is 1-65535")
    app = build_app(models)
    # System fonts: the default theme fetches Google's, which an offline machine cannot reach.
    theme = gr.themes.Soft(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    try:
        app.launch(server_name=host, server_port=port, max_file_size=f"{MAX_UPLOAD_MB}mb", theme=theme,
                   prevent_thread_lock=True, quiet=True, ssr_mode=False, show_error=True)
    except OSError as e:
        raise UserError(f"cannot serve on {host}:{port}: the port is taken or the address is not this "
                        f"machine's ({first_line(e, 60)}); try another --port or --host") from None
    if block:
        print(f"Digits Transformer in the browser: {app.local_url}  (Ctrl+C stops)", flush=True)
        with signals_raise() as pending:  # Ctrl+C, SIGTERM, SIGHUP: close, and exit as the live app does
            while not pending:
                time.sleep(0.2)
        app.close()
        raise Interrupted(pending[0])
    return app
