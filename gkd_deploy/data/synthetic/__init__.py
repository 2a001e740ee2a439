"""Built-in procedural street scenes with Cityscapes' 19 classes, for running the whole
pipeline without downloading a data set.

    render_scene(seed, size, style)  -> (image, label)   one deterministic scene
    render_scene_instances(...)      -> (image, label, instance ids)   the same, with its objects
    render_clip(seed, frames, ...)   -> frames of one drive (a temporally coherent video)
    write_synthetic(out_dir, ...)    -> Cityscapes- and ACDC-layout folders (+ an MP4)

"clear" is the source domain; fog, night, rain and snow are shifted target domains rendered
from the same geometry, so their label maps are exact.

Modules, one job each: camera (projection), raster (z-buffered fills), primitives (faces,
prisms, sprites), street / plots / furniture / vehicles / people (what things look like),
layout (random scene content), scene (rasterising a layout), instances (Cityscapes instance ids
from the object map), styles (weather), render (seed to image), writer (folder layouts,
processes, video).
"""

from .render import render_clip, render_frame, render_scene, render_scene_instances
from .styles import SOURCE_STYLE, STYLES, TARGET_STYLES
from .writer import CITIES, CONDITIONS, SyntheticSummary, scene_seed, write_synthetic

__all__ = [
    "CITIES",
    "CONDITIONS",
    "SOURCE_STYLE",
    "STYLES",
    "TARGET_STYLES",
    "SyntheticSummary",
    "render_clip",
    "render_frame",
    "render_scene",
    "render_scene_instances",
    "scene_seed",
    "write_synthetic",
]
