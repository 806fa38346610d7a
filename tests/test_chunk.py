import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from conftest import write_tiff

from unetseg import UnetsegError, io
from unetseg.chunk import ALL_ROWS, TiffPages, chunk_volume, run_on_threads
from unetseg.cli import main
from unetseg.export import export_tiff


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_round_trip_is_byte_exact(tmp_path, dtype):
    rng = np.random.default_rng(0)
    volume = (rng.random((5, 70, 90)) * 1000).astype(dtype)
    source = write_tiff(tmp_path / "in.tif", volume)
    chunk_volume(source, tmp_path / "v.zarr", chunks=(2, 32, 32))
    stored = io.open_zarr(tmp_path / "v.zarr")
    assert stored.chunks == (2, 32, 32) and stored.dtype == dtype
    export_tiff(tmp_path / "v.zarr", tmp_path / "out.tif")
    back = tifffile.imread(tmp_path / "out.tif")
    assert back.dtype == dtype and back.tobytes() == volume.tobytes()


def test_bigtiff_round_trip_and_export_past_the_classic_tiff_limit(tmp_path, monkeypatch):
    from unetseg import export

    volume = np.random.default_rng(4).integers(0, 65535, (4, 50, 60), dtype=np.uint16)
    source = write_tiff(tmp_path / "in.tif", volume, bigtiff=True)
    chunk_volume(source, tmp_path / "v.zarr", chunks=(1, 32, 32))
    monkeypatch.setattr(export, "BIGTIFF_BYTES", volume.nbytes - 1)  # as if past 4 GB
    export_tiff(tmp_path / "v.zarr", tmp_path / "out.tif")
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        assert tif.is_bigtiff and tif.asarray().tobytes() == volume.tobytes()


@pytest.mark.parametrize("dtype", [np.uint32, np.float16])
def test_slices_over_the_tiling_size_are_exported_as_tiles_row_by_row(tmp_path, monkeypatch, dtype):
    """A segmentation (uint32, exported as uint16) or probability (float16, exported as float32)
    store whose slices are over the bound: tiled pages of 16 px, edge tiles padded, voxel size
    kept (per centimetre: a tiled file is not ImageJ's); the store is read 3 tiles at a time,
    each once."""
    from unetseg import export

    volume = np.random.default_rng(6).integers(0, 1000, (2, 70, 50)).astype(dtype)
    store = io.create_ome_zarr(
        tmp_path / "v.zarr", volume.shape, dtype, (1, 32, 32), (0.5, 0.25, 0.2)
    )
    store[...] = volume
    monkeypatch.setattr(export, "TILED_SLICE_BYTES", 70 * 50 * 2 - 1)
    monkeypatch.setattr(export, "TILE_PX", 16)
    export_tiff(tmp_path / "v.zarr", tmp_path / "out.tif")
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        page = tif.pages[0]
        assert page.is_tiled and (page.tilelength, page.tilewidth) == (16, 16)
        assert len(tif.pages) == 2 and page.resolution == pytest.approx((5e4, 4e4))
        back = tif.asarray()
    assert back.dtype == (np.float32 if dtype == np.float16 else np.uint16)
    assert np.array_equal(back, volume.astype(back.dtype))

    class CountingReads:
        def __init__(self, array):
            self.shape, self.array, self.reads = array.shape, array, []

        def __getitem__(self, index):
            self.reads.append(index)
            return self.array[index]

    monkeypatch.setattr(export, "TILES_PER_READ", 3)
    counting = CountingReads(store)
    assert len(list(export.tiles(counting, np.float32, 16))) == 2 * 5 * 4
    assert counting.reads == [
        (z, slice(y, y + 16), slice(x, x + 48))
        for z in range(2)
        for y in range(0, 70, 16)
        for x in (0, 48)
    ]


def test_2d_image_becomes_one_slice(tmp_path):
    image = np.arange(30 * 40, dtype=np.uint16).reshape(30, 40)
    chunk_volume(write_tiff(tmp_path / "in.tif", image), tmp_path / "v.zarr")
    assert np.array_equal(io.open_zarr(tmp_path / "v.zarr")[...], image[np.newaxis])


def test_ome_metadata_slices_and_voxel_size(tmp_path):
    volume = np.arange(6 * 8 * 8, dtype=np.uint8).reshape(6, 8, 8)
    source = write_tiff(
        tmp_path / "in.tif",
        volume,
        imagej=True,
        resolution=(1 / 0.004, 1 / 0.004),
        metadata={"spacing": 0.05, "axes": "ZYX"},
    )
    chunk_volume(source, tmp_path / "v.zarr", slices=(2, 5))
    group = zarr.open_group(str(tmp_path / "v.zarr"), mode="r")
    multiscale = group.attrs["ome"]["multiscales"][0]
    assert group.attrs["ome"]["version"] == "0.5"
    assert [axis["name"] for axis in multiscale["axes"]] == ["z", "y", "x"]
    assert multiscale["name"] == "v"
    assert io.voxel_size(tmp_path / "v.zarr") == pytest.approx((0.05, 0.004, 0.004))
    assert np.array_equal(group["0"][...], volume[2:5])


def test_labels_kind_is_recorded(tmp_path):
    binary = np.zeros((2, 10, 10), np.uint8)
    binary[:, 2:8, 2:8] = 255
    chunk_volume(write_tiff(tmp_path / "b.tif", binary), tmp_path / "b.zarr", is_labels=True)
    assert io.zarr_attrs(tmp_path / "b.zarr")["label_kind"] == "binary"
    ids = np.zeros((2, 10, 10), np.uint16)
    ids[:, :5], ids[:, 5:] = 7, 300
    chunk_volume(write_tiff(tmp_path / "i.tif", ids), tmp_path / "i.zarr", is_labels=True)
    assert io.zarr_attrs(tmp_path / "i.zarr")["label_kind"] == "instance"


def test_declared_label_kind_settles_what_detection_cannot(tmp_path):
    uint8_ids = np.zeros((2, 10, 10), np.uint8)
    uint8_ids[:, :5], uint8_ids[:, 5:] = 3, 9
    path = write_tiff(tmp_path / "ids.tif", uint8_ids)
    with pytest.raises(UnetsegError, match="declare the volume's label_kind"):
        chunk_volume(path, tmp_path / "auto.zarr", is_labels=True)
    chunk_volume(path, tmp_path / "ids.zarr", is_labels=True, label_kind="instance")
    assert io.zarr_attrs(tmp_path / "ids.zarr")["label_kind"] == "instance"
    grey_mask = np.where(uint8_ids == 3, 128, 0).astype(np.uint8)
    chunk_volume(write_tiff(tmp_path / "g.tif", grey_mask), tmp_path / "g.zarr", is_labels=True,
                 label_kind="binary")  # fmt: skip
    assert io.zarr_attrs(tmp_path / "g.zarr")["label_kind"] == "binary"
    negative = write_tiff(tmp_path / "n.tif", np.where(uint8_ids == 3, -1, 4).astype(np.int16))
    with pytest.raises(UnetsegError, match="n.tif: instance labels must be >= 0, found -1"):
        chunk_volume(negative, tmp_path / "n.zarr", is_labels=True, label_kind="instance")
    assert not (tmp_path / "n.zarr").exists()


def test_ignore_label_is_recorded_and_left_out_of_the_kind(tmp_path):
    """Sparse annotation: 0/1 masks with 2 where nobody annotated are binary labels, though
    {0, 1, 2} alone would be neither binary nor instance ids."""
    sparse = np.zeros((2, 10, 10), np.uint8)
    sparse[:, 2:5, 2:5] = 1
    sparse[:, :, 6:] = 2
    path = write_tiff(tmp_path / "sparse.tif", sparse)
    with pytest.raises(UnetsegError, match="neither binary"):
        chunk_volume(path, tmp_path / "auto.zarr", is_labels=True)
    chunk_volume(path, tmp_path / "s.zarr", is_labels=True, ignore_label=2)
    attrs = io.zarr_attrs(tmp_path / "s.zarr")
    assert attrs["label_kind"] == "binary" and attrs["ignore_label"] == 2
    assert np.array_equal(io.open_zarr(tmp_path / "s.zarr")[...], sparse)  # stored as given
    chunk_volume(path, tmp_path / "dense.zarr", is_labels=True, label_kind="binary")
    assert io.zarr_attrs(tmp_path / "dense.zarr")["ignore_label"] is None


@pytest.mark.parametrize(
    ("ignore", "labels", "message"),
    [
        (0, True, "ignore_label 0 must be between 1 and 255 for uint8 labels"),
        (256, True, "ignore_label 256 must be between 1 and 255 for uint8 labels"),
        (5, True, "every pixel has the ignore label 5: none is annotated"),
        (2, False, "ignore_label is for labels, not raw images"),
    ],
)
def test_bad_ignore_label_is_refused_by_name(tmp_path, ignore, labels, message):
    path = write_tiff(tmp_path / "l.tif", np.full((2, 10, 10), 5, np.uint8))
    with pytest.raises(UnetsegError, match=f"l.tif: {message}"):
        chunk_volume(path, tmp_path / "l.zarr", is_labels=labels, ignore_label=ignore)
    assert not (tmp_path / "l.zarr").exists()


def test_page_reader_reads_slabs_from_its_own_handle_per_thread(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    volume = np.random.default_rng(0).integers(0, 65535, (9, 20, 30), dtype=np.uint16)
    path = write_tiff(tmp_path / "v.tif", volume)
    with TiffPages.of(path, depth=6, first_page=3) as pages:
        with ThreadPoolExecutor(2) as pool:
            slabs = list(pool.map(lambda start: pages.read(start, start + 2, ALL_ROWS), [0, 2, 4]))
        assert len(pages.opened) >= 1
    assert np.array_equal(np.concatenate(slabs), volume[3:9])
    assert TiffPages.of(path, depth=10, first_page=0) is None  # more slices than pages


@pytest.mark.parametrize("shape", [(7, 40, 50), (40, 50)], ids=["stack", "2d"])
def test_tiffs_the_page_reader_cannot_take_go_through_tifffiles_zarr_view(
    tmp_path, shape, monkeypatch
):
    volume = np.random.default_rng(2).integers(0, 65535, shape, dtype=np.uint16)
    source = write_tiff(tmp_path / "in.tif", volume)
    monkeypatch.setattr(TiffPages, "of", classmethod(lambda cls, *args: None))
    slices = (2, 6) if len(shape) == 3 else None
    chunk_volume(source, tmp_path / "v.zarr", chunks=(3, 16, 16), slices=slices, workers=2)
    expected = volume[2:6] if slices else volume[np.newaxis]
    assert np.array_equal(io.open_zarr(tmp_path / "v.zarr")[...], expected)


def recorded_bands(monkeypatch, band_bytes: int) -> list:
    """Make slabs over `band_bytes` go in bands, and record the (start, stop, rows) of each task."""
    from unetseg import chunk

    tasks, copy_slab = [], chunk.copy_slab
    monkeypatch.setattr(chunk, "BAND_BYTES", band_bytes)

    def recording(source, target, start, stop, rows, is_labels):
        tasks.append((start, stop, rows.start, rows.stop))
        return copy_slab(source, target, start, stop, rows, is_labels)

    monkeypatch.setattr(chunk, "copy_slab", recording)
    return tasks


PLANE_LAYOUTS = {
    "one uncompressed strip": dict(contiguous=True),
    "one big-endian strip": dict(byteorder=">"),
    "zlib strips": dict(rowsperstrip=5, compression="zlib"),
    "zlib tiles": dict(tile=(16, 16), compression="zlib"),
}


@pytest.mark.parametrize("layout", PLANE_LAYOUTS)
@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_slices_over_the_band_size_are_read_and_written_in_bands_of_chunk_rows(
    tmp_path, monkeypatch, layout, dtype
):
    """A 2D plane of 70 x 50 px with 16-px chunks and room for 20 rows a task: bands of one
    chunk row (16 rows), read from the strips or tiles under them (or the bytes of one
    uncompressed strip), whatever the file's layout and byte order."""
    plane = np.random.default_rng(4).uniform(0, 4000, (70, 50)).astype(dtype)
    source = write_tiff(tmp_path / "plane.tif", plane, **PLANE_LAYOUTS[layout])
    tasks = recorded_bands(monkeypatch, band_bytes=20 * 50 * plane.itemsize)
    chunk_volume(source, tmp_path / "v.zarr", chunks=(1, 16, 16))
    assert np.array_equal(io.open_zarr(tmp_path / "v.zarr")[...], plane[np.newaxis])
    assert sorted(tasks) == [(0, 1, y, min(y + 16, 70)) for y in range(0, 70, 16)]


def test_banded_stacks_folders_channels_and_shards(tmp_path, monkeypatch):
    """Room for 40 rows a task: bands of one shard row (32 px) of a slice range of a stack, and
    of two chunk rows (32 px) of a slice folder of tiled images and of one channel of a
    hyperstack; labels read in bands keep their checks."""
    rng = np.random.default_rng(5)
    stack = rng.integers(0, 65535, (5, 100, 40), dtype=np.uint16)
    tasks = recorded_bands(monkeypatch, band_bytes=40 * 40 * 2)
    source = write_tiff(tmp_path / "stack.tif", stack, rowsperstrip=8)
    chunk_volume(source, tmp_path / "s.zarr", chunks=(1, 16, 16), shards=(1, 32, 32), slices=(1, 4))
    assert np.array_equal(io.open_zarr(tmp_path / "s.zarr")[...], stack[1:4])
    assert sorted(tasks) == [
        (z, z + 1, y, min(y + 32, 100)) for z in range(3) for y in (0, 32, 64, 96)
    ]

    tasks.clear()
    folder = slice_folder(tmp_path / "folder", [])
    for z in range(3):
        write_tiff(folder / f"s{z}.tif", stack[z], tile=(16, 16))
    chunk_volume(folder, tmp_path / "f.zarr", chunks=(1, 16, 16))
    assert np.array_equal(io.open_zarr(tmp_path / "f.zarr")[...], stack[:3])
    assert len(tasks) == 3 * 4  # 100 rows in bands of 2 chunk rows

    tasks.clear()
    hyperstack = np.stack([stack, stack // 2], axis=1)  # ZCYX
    source = write_tiff(tmp_path / "h.tif", hyperstack, imagej=True, metadata={"axes": "ZCYX"})
    chunk_volume(source, tmp_path / "h.zarr", chunks=(1, 16, 16), channel=1)
    assert np.array_equal(io.open_zarr(tmp_path / "h.zarr")[...], stack // 2)
    assert len(tasks) == 5 * 4

    labels = np.zeros((5, 100, 40), np.uint16)
    labels[:, 90:, :10] = 7  # one cell, only in the last band
    source = write_tiff(tmp_path / "l.tif", labels)
    chunk_volume(source, tmp_path / "l.zarr", chunks=(1, 16, 16), is_labels=True)
    assert io.zarr_attrs(tmp_path / "l.zarr")["label_kind"] == "instance"


@pytest.mark.parametrize(
    ("axes", "layout", "read_as"),
    [("ZCYX", "imagej", "ZCYX"), ("CZYX", "ome", "CZYX"), ("ZYXS", "rgb", "QYXS"),
     ("CYX", "ome", "CYX")],
    ids=["imagej-hyperstack", "ome-tiff", "rgb-stack", "one-slice"],
)  # fmt: skip
def test_one_channel_of_a_multichannel_tiff(tmp_path, axes, layout, read_as):
    """The chosen channel, whatever the axis order, also in a slice range; labels are checked
    against the raw's shape with that channel taken."""
    rng = np.random.default_rng(0)
    sizes = {"Z": 4, "C": 3, "S": 3, "Y": 20, "X": 24}
    data = rng.integers(0, 255, [sizes[axis] for axis in axes], dtype=np.uint8)
    options = {"imagej": dict(imagej=True, metadata={"axes": axes}),
               "ome": dict(ome=True, metadata={"axes": axes}),
               "rgb": dict(photometric="rgb")}[layout]  # fmt: skip
    source = write_tiff(tmp_path / "multi.tif", data, **options)
    assert tifffile.TiffFile(source).series[0].axes == read_as  # Q: tifffile's unknown axis
    grey = np.moveaxis(data, axes.index("C" if "C" in axes else "S"), 0)[1]
    grey = grey if grey.ndim == 3 else grey[np.newaxis]
    slices = (1, 3) if len(grey) > 1 else None
    chunk_volume(source, tmp_path / "raw.zarr", chunks=(1, 8, 8), channel=1, slices=slices)
    expected = grey[slice(*slices) if slices else slice(None)]
    assert np.array_equal(io.open_zarr(tmp_path / "raw.zarr")[...], expected)
    labels = write_tiff(tmp_path / "labels.tif", (grey > 100).astype(np.uint8))
    chunk_volume(labels, tmp_path / "labels.zarr", chunks=(1, 8, 8), slices=slices,
                 is_labels=True, match_shape_of=source, match_channel=1)  # fmt: skip
    assert io.open_zarr(tmp_path / "labels.zarr").shape == expected.shape


def test_a_zarr_store_is_chunked_again_from_a_slice_range(tmp_path):
    volume = np.random.default_rng(3).integers(0, 255, (6, 30, 40), dtype=np.uint8)
    chunk_volume(write_tiff(tmp_path / "in.tif", volume), tmp_path / "a.zarr", chunks=(1, 8, 8))
    chunk_volume(tmp_path / "a.zarr", tmp_path / "b.zarr", chunks=(2, 16, 16), slices=(1, 5))
    assert np.array_equal(io.open_zarr(tmp_path / "b.zarr")[...], volume[1:5])


def slice_folder(folder: Path, slices) -> Path:
    folder.mkdir()
    for index, image in enumerate(slices):
        write_tiff(folder / f"{index}.tif", image)
    return folder


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_slice_folder_round_trip_in_natural_order(tmp_path, dtype, caplog):
    volume = (np.random.default_rng(1).random((12, 20, 30)) * 1000).astype(dtype)
    folder = tmp_path / "slices"
    folder.mkdir()
    for z, image in enumerate(volume):
        write_tiff(folder / f"section{z}.tif", image)  # section10 sorts after section9
    (folder / "notes.txt").write_text("not a slice")
    with caplog.at_level("INFO"):
        chunk_volume(folder, tmp_path / "v.zarr", chunks=(1, 16, 16))
    assert "section9.tif, section10.tif" in caplog.text
    export_tiff(tmp_path / "v.zarr", tmp_path / "out.tif")
    assert tifffile.imread(tmp_path / "out.tif").tobytes() == volume.tobytes()


def test_sharded_store_with_pyramid_reads_in_ome_zarr_py(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    volume = np.random.default_rng(2).integers(0, 255, (6, 100, 90)).astype(np.uint8)
    source = write_tiff(tmp_path / "in.tif", volume)
    chunk_volume(source, tmp_path / "v.zarr", chunks=(1, 32, 32), shards=(2, 64, 64), levels=3,
                 voxel_size=(0.05, 0.004, 0.004))  # fmt: skip
    full = zarr.open_group(str(tmp_path / "v.zarr"))["0"]
    assert full.chunks == (1, 32, 32) and full.shards == (2, 64, 64)
    assert len(list((tmp_path / "v.zarr/0/c").rglob("*"))) < 6 * 4 * 3  # shard files, not chunks
    node = list(Reader(parse_url(str(tmp_path / "v.zarr")))())[0]
    assert [level.shape for level in node.data] == [(6, 100, 90), (6, 50, 45), (6, 25, 22)]
    assert np.array_equal(np.asarray(node.data[0]), volume)
    halved = volume[:, :100, :90].reshape(6, 50, 2, 45, 2).mean(axis=(2, 4)).astype(np.uint8)
    assert np.array_equal(np.asarray(node.data[1]), halved)
    scales = [t[0]["scale"] for t in node.metadata["coordinateTransformations"]]
    assert scales == [[0.05, 0.004, 0.004], [0.05, 0.008, 0.008], [0.05, 0.016, 0.016]]


def bad_input_cases(tmp_path):
    good = write_tiff(tmp_path / "good.tif", np.zeros((3, 16, 16), np.uint8))
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes((tmp_path / "good.tif").read_bytes()[:300])
    not_tiff = tmp_path / "notes.tif"
    not_tiff.write_text("hello")
    nan = np.zeros((2, 8, 8), np.float32)
    nan[1, 3, 3] = np.nan
    grey_labels = np.zeros((2, 8, 8), np.uint8)
    grey_labels[0, :4] = 128
    grey_labels[1, :4] = 255
    rgb = write_tiff(tmp_path / "rgb.tif", np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    # tifffile's (deprecated) default for a (3 or 4, y, x) array: RGB(A) planes, not 4 slices
    planes = tmp_path / "planes.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        tifffile.imwrite(planes, np.ones((4, 8, 8), np.uint16))
    return {
        "missing": (dict(tiff_path=tmp_path / "missing.tif"), "no such file"),
        "truncated": (dict(tiff_path=truncated), "truncated.tif"),
        "not a tiff": (dict(tiff_path=not_tiff), "not a readable TIFF"),
        "rgb": (dict(tiff_path=rgb), "has 3 channels \\(axes YXS\\); set the volume's channel"),
        "4 planes": (dict(tiff_path=planes), "has 4 channels \\(axes SYX\\); set the volume's channel \\(0 to 3\\) "
                     "to the one to segment. If these are 4 slices: .* photometric='minisblack'; write it again"),
        "rgb labels": (dict(tiff_path=rgb, is_labels=True), "has 3 channels \\(axes YXS\\); labels must have one channel$"),
        "channel outside": (dict(tiff_path=rgb, channel=3), "channel 3 is outside its 3 channels"),
        "channel of grey": (dict(tiff_path=good, channel=0), "channel 0 given, but it has no channel axis"),
        "channel of a folder": (dict(tiff_path=slice_folder(tmp_path / "grey", [np.zeros((8, 8), np.uint8)]),
                                     channel=0), "slice folder has no channels"),
        "nan": (dict(tiff_path=write_tiff(tmp_path / "nan.tif", nan)), "NaN or Inf"),
        "empty": (dict(tiff_path=write_tiff(tmp_path / "empty.tif", np.zeros((0, 8, 8), np.uint8))), "empty"),
        "shape mismatch": (
            dict(tiff_path=write_tiff(tmp_path / "l.tif", np.zeros((3, 16, 15), np.uint8)), is_labels=True, match_shape_of=good),
            "does not match",
        ),
        "grey labels": (
            dict(tiff_path=write_tiff(tmp_path / "g.tif", grey_labels), is_labels=True),
            "neither binary",
        ),
        "no cell": (
            dict(tiff_path=write_tiff(tmp_path / "z.tif", np.zeros((2, 8, 8), np.uint8)), is_labels=True),
            "no cell",
        ),
        "slices": (dict(tiff_path=good, slices=(2, 9)), "outside its 3 slices"),
        "int8 raw": (dict(tiff_path=write_tiff(tmp_path / "i8.tif", np.zeros((2, 8, 8), np.int8))), "not supported"),
        "mixed folder": (dict(tiff_path=slice_folder(tmp_path / "mixed", [np.zeros((8, 8), np.uint8),
                                                                          np.zeros((8, 9), np.uint8)])),
                         "slice 1.tif is \\(8, 9\\)"),
    }  # fmt: skip


@pytest.mark.parametrize(
    "case",
    ["missing", "truncated", "not a tiff", "rgb", "4 planes", "rgb labels", "channel outside", "channel of grey",
     "channel of a folder", "nan",
     "empty", "shape mismatch",
     "grey labels", "no cell", "slices", "int8 raw", "mixed folder"],
)  # fmt: skip
def test_bad_input_is_one_clear_error_and_leaves_nothing(tmp_path, case, capsys):
    arguments, message = bad_input_cases(tmp_path)[case]
    out = tmp_path / "out.zarr"
    with pytest.raises(UnetsegError, match=message) as error:
        chunk_volume(out_path=out, **arguments)
    assert "\n" not in str(error.value)
    assert not out.exists()
    assert not list(tmp_path.glob(".out.zarr.tmp-*"))
    # The same through the command line: exit status 1 and one line naming the file.
    command = ["chunk", str(arguments["tiff_path"]), str(out)]
    command += ["--labels"] * arguments.get("is_labels", False)
    command += (
        ["--match", str(arguments["match_shape_of"])] if "match_shape_of" in arguments else []
    )
    command += ["--slices", *map(str, arguments["slices"])] if "slices" in arguments else []
    command += ["--channel", str(arguments["channel"])] if "channel" in arguments else []
    assert main(command) == 1
    stderr = capsys.readouterr().err.splitlines()
    errors = [line for line in stderr if line.startswith("unetseg chunk: error:")]
    assert len(errors) == 1 and str(arguments["tiff_path"]) in errors[0] and not out.exists()


def test_thread_pool_keeps_order_and_stops_at_the_first_error():
    started = []

    def square_unless_three(n):
        started.append(n)
        if n == 3:
            raise ValueError("three")
        time.sleep(0.05)  # long enough for the error to cancel what is queued
        return n * n

    assert run_on_threads(square_unless_three, [(n,) for n in range(3)], workers=2) == [0, 1, 4]
    started.clear()
    with pytest.raises(ValueError, match="three"):
        run_on_threads(square_unless_three, [(n,) for n in range(3, 40)], workers=1)
    assert len(started) <= 2, started  # the calls queued behind the error never ran


def test_memory_does_not_grow_with_the_volume(tmp_path):
    """Peak RSS of `unetseg chunk` on 4 and 48 slices of 2048² (16 vs 192 MiB): each task reads
    only its own slab (a dask array handed to dask.delayed once made it read the whole file)."""
    import sys

    from bench.record import peak_rss_mb

    page = np.random.default_rng(0).integers(0, 255, (2048, 2048)).astype(np.uint8)
    peaks = []
    for n_slices in (4, 48):
        tiff = tmp_path / f"v{n_slices}.tif"
        with tifffile.TiffWriter(tiff) as tif:
            for z in range(n_slices):
                tif.write(np.roll(page, z, axis=0), photometric="minisblack", contiguous=True)
        command = [
            sys.executable,
            "-m",
            "unetseg",
            "chunk",
            str(tiff),
            str(tmp_path / f"v{n_slices}.zarr"),
        ]
        peaks.append(peak_rss_mb(command))
    assert peaks[1] - peaks[0] < 60, peaks  # the larger volume is 176 MiB bigger


@pytest.mark.parametrize(("highest", "expected"), [(70000, np.uint32), (65535, np.uint16)])
@pytest.mark.parametrize("tiled", [False, True])
def test_exported_tiffs_carry_their_voxel_size_and_labels_fit_uint16(
    tmp_path, monkeypatch, highest, expected, tiled
):
    """Calibration read back as ImageJ and other readers see it: ImageJ's `unit` and `spacing`
    with pixels per micrometre, or (uint32 or tiled: not an ImageJ file) the TIFF resolution in
    pixels per centimetre; uint32 ids that fit in uint16 are exported as uint16, exactly."""
    from unetseg import export

    volume = np.random.default_rng(7).integers(0, 500, (3, 40, 50)).astype(np.uint32)
    volume[1, 2, 3] = highest
    store = io.create_ome_zarr(
        tmp_path / "s.zarr", volume.shape, np.uint32, (1, 16, 16), (0.5, 0.25, 0.2)
    )
    store[...] = volume
    if tiled:
        monkeypatch.setattr(export, "TILED_SLICE_BYTES", 10)
        monkeypatch.setattr(export, "TILE_PX", 16)
    export_tiff(tmp_path / "s.zarr", tmp_path / "s.tif")
    with tifffile.TiffFile(tmp_path / "s.tif") as tif:
        back, page, imagej = tif.asarray(), tif.pages[0], tif.imagej_metadata
    assert back.dtype == expected and np.array_equal(back, volume)
    if expected == np.uint16 and not tiled:
        assert imagej["unit"] == "um" and imagej["spacing"] == 0.5
        assert page.resolution == pytest.approx((5.0, 4.0))
    else:
        assert imagej is None and page.resolutionunit == tifffile.RESUNIT.CENTIMETER
        assert page.resolution == pytest.approx((5e4, 4e4))


def test_float_and_signed_stores_keep_their_type_in_the_export(tmp_path):
    for dtype in (np.int32, np.float32):
        volume = np.arange(-5, 15, dtype=dtype).reshape(1, 4, 5)
        store = io.create_ome_zarr(
            tmp_path / f"{dtype.__name__}.zarr", volume.shape, dtype, (1, 4, 5)
        )
        store[...] = volume
        export_tiff(tmp_path / f"{dtype.__name__}.zarr", tmp_path / "out.tif")
        assert tifffile.imread(tmp_path / "out.tif").dtype == dtype
