"""The demo's Gradio page: a query image, a top-k slider and one ranked gallery per model, served
on this machine only; uploads that are not images become a message, not a traceback."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .gallery import DemoError
from .search import GallerySearch, answer_query

# Gradio lays gallery captions over the bottom of each picture, cut to one line; ours carry rank,
# distance, pid and camera, so they go below the picture, whole.
PAGE_CSS = (
    ".thumbnail-item { display: flex !important; flex-direction: column !important;"
    " height: auto !important; } .thumbnail-item img { flex: none !important; }"
    " .caption-label { position: static !important; transform: none !important; max-width: 100% !important;"
    " white-space: normal !important; overflow: visible !important; margin: 2px 0 0 0 !important; }"
)


def build_app(
    searchers: Sequence[GallerySearch],
    examples: Sequence[str] = (),
    max_top_k: int = 50,
    cache_seconds: int = 300,
):
    """The Gradio page: a query image, a top-k slider, and one ranked gallery per model.

    The search endpoint is `api_name="search"`: inputs (image, top_k); outputs, per model, the
    result gallery (first) and a line of text (the query's AP when its identity is known), then
    the results as data (`search.structured`: gallery file, distance, person, camera, same person
    or not, per model), which the page also shows under "results as JSON".
    """
    import gradio as gr

    first = searchers[0]

    def answer(image_path: str | None, top_k: float):
        if not image_path:
            raise gr.Error("Upload a query image first (or pick an example).")
        try:
            return answer_query(searchers, image_path, top_k)
        except (DemoError, OSError) as error:
            raise _rejected(str(error), error) from None

    # Uploads and result thumbnails land in Gradio's cache folder: delete each once it is
    # `cache_seconds` old (a query is answered long before; a second click on Search needs its
    # upload for a while), and everything this app made when it shuts down.
    cleanup = (max(1, min(60, cache_seconds // 2)), cache_seconds)
    with gr.Blocks(title="reidgraft gallery search", delete_cache=cleanup) as app:
        gr.Markdown(
            f"## reidgraft gallery search\n{len(first.gallery)} gallery images from `{first.gallery.label}`. "
            "Drop a picture of a person: the nearest gallery images come back ranked, framed green "
            "when they show the query's person from another camera, dark grey under the query's own "
            "camera (the Market-1501 protocol ignores those), red otherwise. Verdicts and AP need a "
            "Market-style file name (`0002_c1s1_000451_03.jpg`)."
        )
        with gr.Row():
            with gr.Column(scale=1, min_width=220):
                query = gr.Image(type="filepath", label="query", sources=["upload", "clipboard"], height=320)
                query.preprocess = _readable_upload(query.preprocess)
                top_k = gr.Slider(1, max_top_k, value=min(10, max_top_k), step=1, label="top k")
                button = gr.Button("Search", variant="primary")
                if examples:
                    gr.Examples([[path] for path in examples], inputs=[query], label="dataset queries")
            outputs = []
            for number, searcher in enumerate(searchers):
                with gr.Column(scale=3):
                    label = searcher.run_model.label
                    outputs.append(
                        gr.Gallery(label=label, columns=5, object_fit="contain", elem_id=f"results-{number}")
                    )
                    outputs.append(gr.Markdown())
        with gr.Accordion("results as JSON (the API's last output)", open=False):
            outputs.append(gr.JSON(label="results"))
        button.click(answer, inputs=[query, top_k], outputs=outputs, api_name="search")
    return app


def _readable_upload(preprocess):
    """Wrap gr.Image.preprocess so that an upload PIL cannot read becomes a message in the page,
    not a traceback. (A gr.Image subclass would do, but Gradio writes a .pyi stub for each one.)"""
    import gradio as gr

    def checked(payload):
        try:
            return preprocess(payload)
        except gr.Error:
            raise
        except Exception as error:  # PIL raises several kinds for a non-image or damaged file
            name = getattr(payload, "orig_name", None) or "the upload"
            raise _rejected(
                f"{name} is not an image that can be read; upload a JPEG or PNG file", error
            ) from None

    return checked


def _rejected(message: str, cause: Exception):
    """The page shows `message`; the server log gets one line, not Gradio's traceback."""
    import gradio as gr

    print(f"demo: rejected a query: {message} ({type(cause).__name__}: {cause})", file=sys.stderr, flush=True)
    return gr.Error(message, print_exception=False)


def launch(app, host: str, port: int, max_upload_mb: float = 10.0) -> str:
    """Start serving on host:port only (no public share link) without blocking; returns the URL.
    Uploads over `max_upload_mb` are refused by Gradio before they are stored. `app.block_thread()`
    then serves until Ctrl-C, `app.close()` stops."""
    app.queue(default_concurrency_limit=1)
    _, url, _ = app.launch(
        server_name=host, server_port=port, share=False, inbrowser=False, prevent_thread_lock=True,
        show_error=True, quiet=True, css=PAGE_CSS, max_file_size=int(max_upload_mb * 1024 * 1024),
    )  # fmt: skip
    return url
