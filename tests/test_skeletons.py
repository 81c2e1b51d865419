import numpy as np
import pytest

from edge.skeletons import SKELETONS, get_skeleton


@pytest.mark.parametrize("name", sorted(SKELETONS))
def test_flip_permutation_is_an_involution_and_edges_are_in_range(name):
    s = get_skeleton(name)
    perm = s.flip_permutation()
    np.testing.assert_array_equal(perm[perm], np.arange(s.num_landmarks))
    assert all(0 <= a < s.num_landmarks and 0 <= b < s.num_landmarks for a, b in s.edges)
    assert len(set(s.landmarks)) == s.num_landmarks


def test_flip_pairs_match_the_protocols():
    assert get_skeleton("mpii16").flip_pairs == (
        (0, 5),
        (1, 4),
        (2, 3),
        (10, 15),
        (11, 14),
        (12, 13),
    )
    ibug = get_skeleton("ibug68")
    assert {(0, 16), (36, 45), (48, 54)} <= set(ibug.flip_pairs)
    assert ibug.reference_pair == (36, 45)
    # Left/right names swap under the flip.
    mpii = get_skeleton("mpii16")
    for a, b in mpii.flip_pairs:
        assert mpii.landmarks[a].replace("right", "left") == mpii.landmarks[b]


def test_unknown_skeleton_names_the_known_ones():
    with pytest.raises(KeyError, match="mpii16"):
        get_skeleton("nope")
