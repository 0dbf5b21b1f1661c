import pytest

from qmedgen.data.catalog import AUGMENT_OPS, LABEL_PRESERVING, MEDMNIST, label_preserving_ops


def test_every_medmnist_set_and_mnist_has_a_policy_of_known_ops():
    assert set(MEDMNIST) | {"mnist"} == set(LABEL_PRESERVING)
    for ops in LABEL_PRESERVING.values():
        assert set(ops) <= set(AUGMENT_OPS)


@pytest.mark.parametrize("name", ["organamnist", "organcmnist", "organsmnist"])
def test_no_mirror_where_laterality_is_the_label(name):
    assert any("left" in c for c in MEDMNIST[name].class_names)  # the reason
    assert "hflip" not in label_preserving_ops(name, 1)


def test_digits_chest_and_unknown_folders_are_not_mirrored():
    for name in ("mnist", "chestmnist", "pneumoniamnist", "folder:/some/where"):
        ops = label_preserving_ops(name, 1)
        assert "hflip" not in ops and "vflip" not in ops and "rot90" not in ops


def test_cells_allow_all_flips_and_colour_needs_rgb():
    assert {"hflip", "vflip", "rot90", "color"} <= set(label_preserving_ops("bloodmnist", 3))
    assert label_preserving_ops("embedded-bloodmnist", 3) == label_preserving_ops("bloodmnist", 3)
    assert "color" not in label_preserving_ops("bloodmnist", 1)
    assert "vflip" not in label_preserving_ops("octmnist", 1)  # retinal layers have a top and a bottom
