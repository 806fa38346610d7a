"""QC figures for the Snakemake report: data, training curves, predictions and metrics."""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from unetseg import blocks, io  # noqa: E402
from unetseg.headline import PAPER_TABLE_1  # noqa: E402
from unetseg.labels import store_conventions as label_conventions  # noqa: E402
from unetseg.labels import without_ignored  # noqa: E402
from unetseg.rollback import NOT_KEPT_EVENTS  # noqa: E402

FALSE_POSITIVE = (0.8, 0.0, 0.8)  # magenta and green: distinguishable by colour-blind readers
FALSE_NEGATIVE = (0.0, 0.7, 0.3)
MAX_SLICES = 4
# A panel shows at most VIEW_PX px a side: the whole slice when it is smaller, else its centre at
# full resolution (where membranes and contours can still be seen), so that what a figure reads
# and draws does not grow with the slice.
VIEW_PX = 1024


def pick_slices(n_slices: int) -> list[int]:
    return sorted(set(np.linspace(0, n_slices - 1, min(n_slices, MAX_SLICES)).astype(int)))


def centre_window(shape_yx) -> tuple[slice, slice]:
    """The centre VIEW_PX x VIEW_PX of a slice of this (y, x) shape, or all of it."""
    starts = [max(0, (n - VIEW_PX) // 2) for n in shape_yx]
    return tuple(slice(s, s + min(n, VIEW_PX)) for s, n in zip(starts, shape_yx, strict=True))


def read_view(array, z: int, window: tuple[slice, slice]) -> np.ndarray:
    return np.asarray(array[(z, *window)])


def window_note(window: tuple[slice, slice], shape_yx) -> str:
    """'' for a whole slice, else where the panel's centre crop lies."""
    if all(w.stop - w.start == n for w, n in zip(window, shape_yx, strict=True)):
        return ""
    (y, x) = window
    return f" (y {y.start}:{y.stop}, x {x.start}:{x.stop})"


def boundaries(ids: np.ndarray) -> np.ndarray:
    return ids != ndimage.grey_erosion(ids, size=3)


def draw_mask(axis, mask: np.ndarray, colour, alpha: float = 1.0) -> None:
    """`mask` in `colour` over what the axis shows; elsewhere transparent."""
    rgba = np.zeros((*mask.shape, 4))
    rgba[mask] = (*colour, alpha)
    axis.imshow(rgba)


def overlay(
    axis, image: np.ndarray, mask: np.ndarray, colour, title: str, grey_range=(None, None)
) -> None:
    """`image` in grey (stretched to its own range unless `grey_range` is given) and `mask` in
    `colour` over it."""
    axis.imshow(image, cmap="gray", vmin=grey_range[0], vmax=grey_range[1])
    draw_mask(axis, mask, colour)
    axis.set_title(title, fontsize=9)
    axis.axis("off")


def save(figure, path: str | os.PathLike) -> None:
    figure.tight_layout()
    with io.atomic_output(path) as tmp:
        figure.savefig(tmp, dpi=100, format="png")
    plt.close(figure)


def data_figure(raw_path, labels_path, weights_path, out_path) -> None:
    """Raw slices with the label boundaries overlaid, and the weight map of the first slice."""
    raw, labels, weights = (io.open_zarr(p) for p in (raw_path, labels_path, weights_path))
    slices = pick_slices(raw.shape[0])
    window = centre_window(raw.shape[1:])
    where = window_note(window, raw.shape[1:])
    _, ignore = label_conventions(labels_path)
    figure, axes = plt.subplots(1, len(slices) + 2, figsize=(3 * (len(slices) + 2), 3.3))
    for axis, z in zip(axes, slices, strict=False):
        view = read_view(labels, z, window)
        image, borders = read_view(raw, z, window), boundaries(without_ignored(view, ignore) > 0)
        overlay(axis, image, borders, (1.0, 0.6, 0.0), f"raw z={z}{where} + label borders")
        if ignore is not None:  # sparse annotation: the unannotated part, tinted blue
            draw_mask(axis, view == ignore, (0.2, 0.4, 1.0), alpha=0.35)
    view = read_view(labels, slices[0], window)
    shown_labels = (without_ignored(view, ignore) > 0).astype(float)
    if ignore is not None:
        shown_labels[view == ignore] = 0.5
    axes[-2].imshow(shown_labels, cmap="gray", vmin=0, vmax=1)
    legend = "white = cell" + (", grey = not annotated" if ignore is not None else "")
    axes[-2].set_title(f"labels z={slices[0]} ({legend})", fontsize=9)
    axes[-2].axis("off")
    shown = axes[-1].imshow(read_view(weights, slices[0], window), cmap="viridis")
    axes[-1].set_title(f"weight map w(x) z={slices[0]}", fontsize=9)
    axes[-1].axis("off")
    figure.colorbar(shown, ax=axes[-1], fraction=0.046)
    save(figure, out_path)


def annotated_sample_place(rng, weights, window, tries: int = 8):
    """(z, weights in the window, centre) of a sample placed as training places them: anywhere in
    a fully annotated slice, on an annotated pixel of a sparse one (up to `tries` slices are
    drawn to find one with annotation in the window)."""
    from unetseg.augment import annotated_cells, annotated_point

    for _ in range(tries):
        z = int(rng.integers(weights.shape[0]))
        weight_view = read_view(weights, z, window)
        cells = annotated_cells(weight_view)
        if cells is None:
            return z, weight_view, None
        if len(cells):
            return z, weight_view, annotated_point(rng, weight_view, cells)
    return z, weight_view, None


def augmentation_figure(raw_path, labels_path, weights_path, settings: dict, out_path) -> None:
    """Elastically deformed training samples as the network sees them, with their labels; taken
    from the centre window of slices over VIEW_PX a side."""
    from unetseg import intensity, tiling
    from unetseg.augment import AugmentConfig, augmented_sample
    from unetseg.labels import interior

    raw, labels, weights = (io.open_zarr(p) for p in (raw_path, labels_path, weights_path))
    kind, ignore = label_conventions(labels_path)
    grey_mappings = intensity.slice_mappings(
        raw,
        settings.get("normalize", intensity.DEFAULT_METHOD),
        settings.get("normalize_percentiles", intensity.DEFAULT_PERCENTILES),
    )
    tile_out, depth = settings["tile_out"], settings["depth"]
    tile_in = tiling.input_size(tile_out, depth)
    config = AugmentConfig(**settings.get("augment", {}))
    window = centre_window(raw.shape[1:])
    figure, axes = plt.subplots(2, 4, figsize=(13, 6.6))
    for column in range(4):
        rng = np.random.default_rng([settings.get("seed", 0), column])
        z, weight_view, center = annotated_sample_place(rng, weights, window)
        image, target, weight = augmented_sample(
            rng, intensity.normalized(read_view(raw, z, window), grey_mappings[z]),
            interior(read_view(labels, z, window), kind, ignore).astype(np.uint8),
            weight_view, tile_in, tile_out, config, center,
        )  # fmt: skip
        context = (tile_in - tile_out) // 2
        border = np.zeros(image.shape, bool)
        border[context : context + tile_out, context : context + tile_out] = boundaries(target)
        # On the network's input scale, not stretched: an unsuited normalisation shows.
        overlay(axes[0, column], image, border, (1.0, 0.6, 0.0),
                f"sample {column} (z={z}) + labels, 0-1", grey_range=(0, 1))  # fmt: skip
        shown = axes[1, column].imshow(weight, cmap="viridis")
        axes[1, column].set_title("its weight map (output tile)", fontsize=9)
        axes[1, column].axis("off")
        figure.colorbar(shown, ax=axes[1, column], fraction=0.046)
    save(figure, out_path)


MISSING = ("", "NA")  # an empty cell; Snakemake's benchmark files write NA where unmeasured


def as_numbers(values: list[str]) -> list[float] | None:
    """The cells as floats (empty or NA as NaN; "nan" and "inf" too: a diverged loss is still a
    number), or None if any other cell is text (the training log's `event`, h:m:s times)."""
    numbers = []
    for value in values:
        if value.strip() in MISSING:
            numbers.append(np.nan)
            continue
        try:
            numbers.append(float(value))
        except ValueError:
            return None
    return numbers


def read_tsv(path) -> dict[str, np.ndarray]:
    """Columns of a TSV: numbers as floats (empty as NaN), a column with any other text (the
    training log's `event`) as strings."""
    lines = [line.split("\t") for line in Path(path).read_text().splitlines() if line]
    header, rows = lines[0], lines[1:]
    columns = {}
    for index, name in enumerate(header):
        values = [row[index] if index < len(row) else "" for row in rows]
        numbers = as_numbers(values)
        columns[name] = np.array(values if numbers is None else numbers)
    return columns


def events(log: dict[str, np.ndarray]) -> list[str]:
    """The `event` column's text per row ("" where none; logs from before it had none)."""
    column = log.get("event")
    if column is None or column.dtype.kind != "U":
        return [""] * len(log["step"])
    return [str(text) for text in column]


def rollback_steps(log: dict[str, np.ndarray]) -> list[float]:
    """The steps at which the training log records a rollback."""
    return [float(step) for step, text in zip(log["step"], events(log), strict=True)
            if text.startswith("rollback")]  # fmt: skip


def stopped_note(log: dict[str, np.ndarray]) -> str | None:
    """A line for a run that spent its rollbacks and stopped (the training log's last `stopped`
    event), else None: its kept model may have learned little, which the errors alone hide."""
    stops = [step for step, text in zip(log["step"], events(log), strict=True)
             if text.startswith("stopped")]  # fmt: skip
    if not stops:
        return None
    kept = kept_step(log)
    model = "the kept model" + (f" (step {kept:.0f})" if kept is not None else "")
    return (f"Training stopped at step {stops[-1]:.0f} with its rollbacks spent; {model} may "
            "have learned little: see the warning in logs/train/all.log")  # fmt: skip


def kept_by_ap50(log: dict[str, np.ndarray]) -> bool:
    """Whether the run chose its kept model by AP50 (train.keep_by: ap50; the log then has it)."""
    return "ap50" in log and bool(np.isfinite(log["ap50"]).any())


def kept_row(log: dict[str, np.ndarray]) -> int | None:
    """The log row of the kept model, as training chooses it: the last of the lowest validation
    Rand errors, or of the highest AP50s, among rows the guard did not flag (a flagged row's
    event names its rollback, the stop or the bad validation it watched; unguarded runs log
    none)."""
    chooser = 1 - log["ap50"] if kept_by_ap50(log) else log["rand_error"].copy()
    chooser[[text.startswith(NOT_KEPT_EVENTS) for text in events(log)]] = np.nan
    if not np.isfinite(chooser).any():
        return None
    return len(chooser) - 1 - int(np.nanargmin(chooser[::-1]))


def kept_step(log: dict[str, np.ndarray]) -> float | None:
    row = kept_row(log)
    return None if row is None else float(log["step"][row])


def training_figure(log_path, out_path) -> None:
    """Loss, validation errors and learning rate against steps, best step marked."""
    log = read_tsv(log_path)
    figure, (loss_axis, error_axis, lr_axis) = plt.subplots(1, 3, figsize=(13, 3.5))
    loss_axis.plot(log["step"], log["loss"], marker="o", color="#0072B2")
    loss_axis.set(xlabel="step", ylabel="weighted cross-entropy", title="training loss")
    for name, colour in (("pixel_error", "#E69F00"), ("rand_error", "#009E73")):
        error_axis.plot(log["step"], log[name], marker="o", color=colour, label=name)
    if kept_by_ap50(log):
        error_axis.plot(log["step"], 1 - log["ap50"], marker="o", color="#56B4E9", label="1 - AP50")
    best_step = kept_step(log)
    if best_step is not None:
        error_axis.axvline(
            best_step, color="grey", linestyle="--", label=f"best (step {best_step:.0f})"
        )
    for k, step in enumerate(rollback_steps(log)):
        error_axis.axvline(step, color="#D55E00", linestyle=":",
                           label="rollback (event column)" if k == 0 else None)  # fmt: skip
    error_axis.set(xlabel="step", ylabel="error", title="validation (ISBI 2012 definitions)")
    error_axis.legend(fontsize=8)
    if len(log["step"]) > 1:
        wall = error_axis.secondary_xaxis(
            "top",
            functions=(
                lambda step: np.interp(step, log["step"], log["seconds"]),
                lambda seconds: np.interp(seconds, log["seconds"], log["step"]),
            ),
        )
        wall.set_xlabel("wall time (s)", fontsize=8)
    lr_axis.plot(log["step"], log["learning_rate"], color="#CC79A7")
    lr_axis.set(xlabel="step", ylabel="learning rate", title="learning rate")
    if note := stopped_note(log):
        figure.suptitle(note, color="#D55E00", fontsize=10)
    save(figure, out_path)


def prediction_figure(
    raw_path, labels_path, probability_path, segmentation_path, metrics_path, out_path
):
    """Per held-out slice: raw, probability, segmentation contours on raw, error map."""
    raw, labels, probability, segmentation = (
        io.open_zarr(p) for p in (raw_path, labels_path, probability_path, segmentation_path)
    )
    from unetseg.evaluate import topology_errors

    metrics = json.loads(Path(metrics_path).read_text())
    threshold = metrics["pixel"]["best_threshold"]
    warping_threshold = metrics["warping"]["best_threshold"]
    slices = pick_slices(raw.shape[0])
    window = centre_window(raw.shape[1:])  # splits and merges are those of this window
    figure, axes = plt.subplots(len(slices), 4, figsize=(13, 3.3 * len(slices)), squeeze=False)
    for row, z in zip(axes, slices, strict=True):
        image = read_view(raw, z, window)
        chance = read_view(probability, z, window).astype(np.float32)
        truth_ids = read_view(labels, z, window)
        row[0].imshow(image, cmap="gray")
        row[0].set_title(f"raw z={z}{window_note(window, raw.shape[1:])}", fontsize=9)
        row[0].axis("off")
        shown = row[1].imshow(chance, cmap="cividis", vmin=0, vmax=1)
        row[1].set_title("P(cell interior)", fontsize=9)
        row[1].axis("off")
        figure.colorbar(shown, ax=row[1], fraction=0.046)
        contours = boundaries(read_view(segmentation, z, window))
        overlay(row[2], image, contours, (1.0, 0.6, 0.0), "segmentation contours")
        predicted = chance > threshold
        truth = truth_ids > 0
        row[3].imshow(image, cmap="gray", alpha=0.5)
        errors = np.zeros((*truth.shape, 4))
        errors[predicted & ~truth] = (*FALSE_POSITIVE, 1)
        errors[~predicted & truth] = (*FALSE_NEGATIVE, 1)
        row[3].imshow(errors)
        marks = np.zeros(truth.shape, np.int8)
        topology_errors(truth_ids, chance, warping_threshold, marks)
        for value, marker, colour, name in (
            (1, "x", "#F0E442", "split"),
            (2, "o", "#0072B2", "merge"),
        ):
            ys, xs = np.nonzero(marks == value)
            row[3].scatter(
                xs, ys, marker=marker, s=14, color=colour, label=f"{name} ({len(xs)} px)"
            )
        row[3].legend(fontsize=7, loc="lower right")
        row[3].set_title(
            f"FP magenta, FN green (t={threshold:.1f});\nsplits/merges (warping t={warping_threshold:.1f})",
            fontsize=9,
        )
        row[3].axis("off")
    save(figure, out_path)


def instances_figure(raw_path, labels_path, segmentation_path, instances_path, out_path) -> None:
    """AP50 of each image (slice), then the images with the lowest: true outlines, predicted
    outlines, and what is wrong at IoU 0.5 (missed and false objects filled, splits and merges
    marked), for a person to check what the AP counts."""
    from unetseg.evaluate import instance_errors
    from unetseg.labels import cells

    raw, truth, segmentation = (io.open_zarr(p) for p in (raw_path, labels_path, segmentation_path))
    kind = label_conventions(labels_path)[0]
    per_slice = json.loads(Path(instances_path).read_text())["per_slice"]
    worst = sorted(
        sorted(per_slice, key=lambda s: s["ap50"])[:MAX_SLICES], key=lambda s: s["slice"]
    )
    window = centre_window(raw.shape[1:])
    figure, axes = plt.subplots(1 + len(worst), 1, figsize=(9, 2.6 + 6 * len(worst)),
                                squeeze=False, height_ratios=[0.4] + [1] * len(worst))  # fmt: skip
    bars = axes[0, 0]
    bars.bar([s["slice"] for s in per_slice], [s["ap50"] for s in per_slice], color="#0072B2")
    for entry in per_slice:
        bars.annotate(str(entry["objects"]), (entry["slice"], entry["ap50"]), ha="center",
                      va="bottom", fontsize=7)  # fmt: skip
    bars.set(xlabel="slice (image)", ylabel="AP@0.5", ylim=(0, 1.1),
             title="AP at IoU 0.5 per image (number of true objects above each bar)")  # fmt: skip
    bars.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    for axis, entry in zip(axes[1:, 0], worst, strict=True):
        z = entry["slice"]
        truth_ids = cells(read_view(truth, z, window), kind)
        predicted_ids = read_view(segmentation, z, window)
        wrong = instance_errors(truth_ids, predicted_ids)
        axis.imshow(read_view(raw, z, window), cmap="gray")
        draw_mask(axis, np.isin(truth_ids, wrong["missed"]), FALSE_NEGATIVE, 0.45)
        draw_mask(axis, np.isin(predicted_ids, wrong["false"]), FALSE_POSITIVE, 0.45)
        draw_mask(axis, boundaries(truth_ids) & (truth_ids > 0), FALSE_NEGATIVE)
        draw_mask(axis, boundaries(predicted_ids) & (predicted_ids > 0), (1.0, 0.6, 0.0))
        for key, ids, marker, colour in (("split", truth_ids, "x", "#F0E442"),
                                         ("merged", predicted_ids, "o", "#56B4E9")):  # fmt: skip
            if wrong[key]:
                centres = ndimage.center_of_mass(np.ones_like(ids), ids, wrong[key])
                ys, xs = zip(*centres, strict=True)
                axis.scatter(xs, ys, marker=marker, s=60, color=colour, linewidths=2,
                             label=f"{key} ({len(centres)})")  # fmt: skip
        if wrong["split"] or wrong["merged"]:
            axis.legend(fontsize=8, loc="lower right")
        axis.set_title(
            f"slice {z}{window_note(window, raw.shape[1:])}: AP@0.5 {entry['ap50']:.2f}, "
            f"{entry['objects']} true objects; outlines true green, predicted orange; missed "
            f"{len(wrong['missed'])} (green fill), false {len(wrong['false'])} (magenta fill)",
            fontsize=9,
        )
        axis.axis("off")
    save(figure, out_path)


def volume_statistics(probability, segmentation, bins: int = 50):
    """(cells per slice, every cell's area in px, histogram of P over `bins` equal bins of
    [0, 1]), read chunk by chunk: memory does not grow with the slices. A cell is an id of a
    slice (the ids of a segmentation are per-slice components)."""
    cells_per_slice = np.zeros(segmentation.shape[0], np.int64)
    areas, histogram = [], np.zeros(bins, np.int64)
    for z in range(segmentation.shape[0]):
        ids, counts = [], []
        for window in blocks.chunk_windows(segmentation.shape[1:], segmentation.chunks[1:]):
            found, found_counts = np.unique(read_view(segmentation, z, window), return_counts=True)
            ids.append(found)
            counts.append(found_counts)
            chance = read_view(probability, z, window).astype(np.float32)
            histogram += np.histogram(chance, bins=bins, range=(0, 1))[0]
        cells, where = np.unique(np.concatenate(ids), return_inverse=True)
        cell_areas = np.bincount(where, weights=np.concatenate(counts)).astype(np.int64)
        cell_areas = cell_areas[cells != 0]  # 0 is the background
        cells_per_slice[z] = len(cell_areas)
        areas.append(cell_areas)
    return cells_per_slice, np.concatenate(areas), histogram


def volume_figure(raw_path, probability_path, segmentation_path, out_path, volume: str) -> None:
    """For any predicted volume, labelled or not: per slice the whole slice (subsampled) and a
    full-resolution window with the segmentation's contours and P(cell interior); then cells per
    slice, the cells' areas and the histogram of P, which show a model that does not fit the
    data (few, huge or tiny cells; many uncertain pixels) without ground truth."""
    raw, probability, segmentation = (
        io.open_zarr(p) for p in (raw_path, probability_path, segmentation_path)
    )
    settings = io.zarr_attrs(segmentation_path)
    threshold, min_size_px = settings.get("threshold"), settings.get("min_size_px") or 0
    slices = pick_slices(raw.shape[0])
    window = centre_window(raw.shape[1:])
    step = -(-max(raw.shape[1:]) // VIEW_PX)
    figure, axes = plt.subplots(
        len(slices) + 1, 3, figsize=(13, 3.6 * (len(slices) + 1)), squeeze=False
    )
    for row, z in zip(axes, slices, strict=False):
        row[0].imshow(np.asarray(raw[z, ::step, ::step]), cmap="gray")
        where = window_note(window, raw.shape[1:])
        if where:  # the window of the next two panels
            (y, x) = window
            corner = (x.start / step - 0.5, y.start / step - 0.5)
            size = ((x.stop - x.start) / step, (y.stop - y.start) / step)
            row[0].add_patch(
                matplotlib.patches.Rectangle(corner, *size, fill=False, edgecolor=(1.0, 0.6, 0.0))
            )
        subsampled = f", 1 px in {step} a side" if step > 1 else ""
        named = f"{volume} ({' x '.join(map(str, raw.shape))} px)\n" if z == slices[0] else ""
        row[0].set_title(f"{named}raw z={z}, whole slice{subsampled}", fontsize=9)
        row[0].axis("off")
        image = read_view(raw, z, window)
        contours = boundaries(read_view(segmentation, z, window))
        overlay(row[1], image, contours, (1.0, 0.6, 0.0), f"segmentation contours{where}")
        chance = read_view(probability, z, window).astype(np.float32)
        shown = row[2].imshow(chance, cmap="cividis", vmin=0, vmax=1)
        row[2].set_title("P(cell interior)", fontsize=9)
        row[2].axis("off")
        figure.colorbar(shown, ax=row[2], fraction=0.046)
    cells_per_slice, areas, histogram = volume_statistics(probability, segmentation)
    counts_axis, areas_axis, chance_axis = axes[-1]
    counts_axis.plot(np.arange(len(cells_per_slice)), cells_per_slice, marker=".", color="#0072B2")
    counts_axis.set(xlabel="slice z", ylabel="cells", ylim=(0, None))
    counts_axis.set_xlim(-0.5, len(cells_per_slice) - 0.5)
    counts_axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    counts_axis.set_title(f"cells per slice ({cells_per_slice.sum()} in all)", fontsize=10)
    if len(areas):
        edges = np.geomspace(1, max(2, areas.max()) + 1, 40)
        areas_axis.hist(areas, bins=edges, color="#009E73")
        areas_axis.set_xscale("log")
        small = int((areas < 10).sum())  # fragments: noise above the threshold, broken cells
        title = f"cell areas (median {np.median(areas):.0f} px; {small} under 10 px)"
        if min_size_px > 1:
            title += f"\ncells under {min_size_px} px dropped (segment.min_size_px)"
        areas_axis.set_title(title, fontsize=10)
    else:
        areas_axis.set_title("cell areas: no cells", fontsize=10)
    areas_axis.set(xlabel="area (px)", ylabel="cells")
    centres = (np.arange(len(histogram)) + 0.5) / len(histogram)
    chance_axis.bar(centres, histogram, width=1 / len(histogram), color="#E69F00")
    chance_axis.set_yscale("log")
    if threshold is not None:
        chance_axis.axvline(
            threshold, color="grey", linestyle="--", label=f"threshold {threshold:g}"
        )
        chance_axis.legend(fontsize=8)
    uncertain = histogram[(centres > 0.1) & (centres < 0.9)].sum() / max(1, histogram.sum())
    chance_axis.set(xlabel="P(cell interior)", ylabel="pixels")
    chance_axis.set_title(f"P of every pixel ({100 * uncertain:.1f} % within 0.1-0.9)", fontsize=10)
    save(figure, out_path)


SUMMARY_COLUMNS = [
    "volume", "role", "warping_error", "rand_error", "pixel_error", "rand_error_pairs",
    "skimage_adapted_rand_error", "ap50", "mean_ap",
]  # fmt: skip
ERROR_COLUMNS = SUMMARY_COLUMNS[2:6]  # as metrics.json names them


def write_summary(names, roles, metrics_paths, instance_paths, out_path) -> None:
    """One row per evaluated volume with its role (validate: it chose the kept model; test: it
    chose nothing), then the paper's Table 1 rows (ISBI test set)."""
    rows = []
    volumes = zip(names, roles, metrics_paths, instance_paths, strict=True)
    for name, role, metrics_path, instance_path in volumes:
        metrics = json.loads(Path(metrics_path).read_text())
        instances = json.loads(Path(instance_path).read_text())
        values = {
            **{key: metrics[key] for key in ERROR_COLUMNS},
            "skimage_adapted_rand_error": metrics["skimage"]["adapted_rand_error"],
            "ap50": instances["ap50"],
            "mean_ap": instances["mean_ap"],
        }
        rows.append([name, role] + [f"{values[key]:.6g}" for key in SUMMARY_COLUMNS[2:]])
    for name, (warping, rand, pixel) in PAPER_TABLE_1.items():
        rows.append([f"paper Table 1: {name}", "test", str(warping), str(rand), str(pixel)]
                    + [""] * 4)  # fmt: skip
    with io.atomic_output(out_path) as tmp:
        tmp.write_text("\n".join("\t".join(row) for row in [SUMMARY_COLUMNS, *rows]) + "\n")


def metrics_figure(metrics_path, out_path, volume: str) -> None:
    """Metrics beside the paper's Table 1, and F-score against threshold curves."""
    metrics = json.loads(Path(metrics_path).read_text())
    figure, (table_axis, curve_axis) = plt.subplots(
        1, 2, figsize=(12, 3.5), gridspec_kw={"width_ratios": [1.2, 1]}
    )
    rows = [[name, f"{w:.6f}", f"{r:.4f}", f"{p:.4f}"] for name, (w, r, p) in PAPER_TABLE_1.items()]
    rows.append(
        [
            f"this run: {volume}",
            f"{metrics['warping_error']:.6f}",
            f"{metrics['rand_error']:.4f}",
            f"{metrics['pixel_error']:.4f}",
        ]
    )
    table = table_axis.table(
        cellText=rows, colLabels=["", "warping error", "Rand error", "pixel error"], loc="center"
    )
    table.scale(1, 1.6)
    table_axis.axis("off")
    table_axis.set_title("ISBI 2012 metrics beside the paper's Table 1 (test set)", fontsize=9)
    thresholds = np.arange(len(metrics["pixel"]["f_scores"])) / 10
    for key, colour in (("pixel", "#E69F00"), ("rand", "#009E73"), ("rand_pairs", "#56B4E9")):
        curve_axis.plot(thresholds, metrics[key]["f_scores"], marker="o", color=colour, label=key)
    curve_axis.set(xlabel="threshold on P(cell interior)", ylabel="F-score", ylim=(0, 1.02))
    curve_axis.legend(fontsize=8)
    curve_axis.set_title("F-score against threshold", fontsize=9)
    save(figure, out_path)


def run_summary(benchmark_dir, config: dict, out_html, out_png) -> None:
    """Time and peak memory per rule (from the `benchmark:` files), configuration, versions."""
    import platform
    from importlib.metadata import version

    import torch
    import yaml

    rows = []
    for tsv in sorted(Path(benchmark_dir).glob("*/*.tsv")):
        record = read_tsv(tsv)
        rows.append(
            (f"{tsv.parent.name} ({tsv.stem})", float(record["s"][0]), float(record["max_rss"][0]))
        )
    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(12, 0.3 * len(rows) + 1.5))
    names = [row[0] for row in rows]
    time_axis.barh(names, [row[1] for row in rows], color="#0072B2")
    time_axis.set(xlabel="wall time (s)", title="time per job")
    time_axis.invert_yaxis()
    memory_axis.barh(names, [row[2] for row in rows], color="#E69F00")
    memory_axis.set(xlabel="peak resident memory (MB)", title="memory per job")
    memory_axis.invert_yaxis()
    memory_axis.set_yticklabels([])
    save(figure, out_png)

    packages = [
        "unetseg",
        "snakemake",
        "torch",
        "zarr",
        "dask",
        "numpy",
        "scikit-image",
        "tifffile",
    ]
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor()
    table = "".join(
        f"<tr><td>{name}</td><td>{seconds:.1f}</td><td>{rss:.0f}</td></tr>"
        for name, seconds, rss in rows
    )
    versions = "".join(f"<tr><td>{name}</td><td>{version(name)}</td></tr>" for name in packages)
    html = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>Run</title>
<style>body{{font-family:sans-serif;margin:1em}}td,th{{padding:2px 10px;text-align:left}}</style>
</head><body>
<h2>Jobs</h2><table><tr><th>rule (job)</th><th>seconds</th><th>peak RSS (MB)</th></tr>{table}</table>
<h2>Machine</h2><p>{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs;
device for torch: {device or "CPU"}</p>
<h2>Package versions</h2><table>{versions}</table>
<h2>Configuration</h2><pre>{yaml.safe_dump(config, sort_keys=False)}</pre>
</body></html>
"""
    with io.atomic_output(out_html) as tmp:
        tmp.write_text(html)
