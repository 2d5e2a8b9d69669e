import networkx as nx
import numpy as np
import pytest

pytest.importorskip("rdkit")

from rdkit import Chem, DataStructs  # noqa: E402
from rdkit.Chem import AllChem  # noqa: E402

from scidiff.graphs import metrics as M  # noqa: E402
from scidiff.graphs.datasets import moses_available  # noqa: E402

GEN = ["CCO", "OCC", "c1ccccc1O", None, "CC(=O)Nc1ccc(Cl)cc1", "C.CC"]
TRAIN = ["CCO", "CCN", "Oc1ccccc1"]


def test_validity_uniqueness_novelty_by_hand():
    out = M.validity_uniqueness_novelty(GEN, TRAIN)
    # valid: 5 of 6; canonical: CCO, CCO, Oc1ccccc1, CC(=O)Nc1ccc(Cl)cc1, C.CC -> 4 unique
    assert out["validity"] == pytest.approx(5 / 6)
    assert out["connected"] == pytest.approx(4 / 6)
    assert out["uniqueness"] == pytest.approx(4 / 5)
    # novel: the acetanilide and C.CC (CCO and phenol are in train, phenol written differently)
    assert out["novelty"] == pytest.approx(2 / 4)
    assert out["vun"] == pytest.approx(2 / 6)
    with pytest.raises(ValueError, match="no molecules"):
        M.validity_uniqueness_novelty([], TRAIN)


def test_similarities_against_rdkit():
    gen, ref = ["CCOc1ccccc1", "CCN(C)C"], ["COc1ccccc1", "CCNC", "c1ccncc1"]
    fp = lambda s: AllChem.GetMorganGenerator(radius=2, fpSize=1024).GetFingerprint(Chem.MolFromSmiles(s))  # noqa: E731
    expect = np.mean([max(DataStructs.TanimotoSimilarity(fp(g), fp(r)) for r in ref) for g in gen])
    assert M.snn(gen, ref) == pytest.approx(expect)
    assert M.snn(ref, ref) == pytest.approx(1.0)
    pairs = [[DataStructs.TanimotoSimilarity(fp(a), fp(b)) for b in ref] for a in ref]
    assert M.internal_diversity(ref) == pytest.approx(1 - np.mean(pairs))
    assert M.fragment_similarity(ref, ref) == pytest.approx(1.0)
    # BRICS splits the ether of anisole but not pyridine: shared fragment counts by hand
    assert 0 < M.fragment_similarity(gen, ref) < 1


def test_scaffolds():
    naphthalene_deriv = Chem.MolFromSmiles("CCc1ccc2ccccc2c1")
    assert M.scaffold(naphthalene_deriv) == "c1ccc2ccccc2c1"
    assert M.scaffold(Chem.MolFromSmiles("CCc1ccccc1")) is None  # one ring: dropped (min_rings = 2)
    a, b = ["CCc1ccc2ccccc2c1", "Oc1ccc2ccccc2c1"], ["c1ccc2ccccc2c1", "C1CCC2CCCCC2C1"]
    # scaffold counts: a = {naph: 2}, b = {naph: 1, decalin: 1} -> cosine = 2 / (2 * sqrt 2)
    assert M.scaffold_similarity(a, b) == pytest.approx(1 / np.sqrt(2))


@pytest.mark.skipif(not moses_available(), reason="MOSES alert files (pip install --no-deps molsets) are absent")
def test_filters():
    assert M.passes_filters(Chem.MolFromSmiles("CC(=O)Nc1ccc(O)cc1"))
    assert not M.passes_filters(Chem.MolFromSmiles("C1CCCCCCC1"))  # 8-ring
    assert not M.passes_filters(Chem.MolFromSmiles("C[N+](C)(C)C"))  # charged
    assert not M.passes_filters(Chem.MolFromSmiles("CCP"))  # phosphorus
    assert not M.passes_filters(Chem.MolFromSmiles("c1ccccc1N=Nc1ccccc1"))  # azo: a PAINS/MCF alert
    assert M.filters(["CCO", "C1CCCCCCC1", None]) == pytest.approx(0.5)


def test_fcd():
    pytest.importorskip("fcd_torch")
    a = ["CCO", "CCN", "c1ccccc1", "CC(=O)O", "CCCC", "CCOC"]
    b = ["CCCCCCCl", "Brc1ccccc1", "OCCOCCO", "C1CCNCC1", "CC#N", "FC(F)F"]
    assert abs(M.fcd(a, a)) < 1e-3
    assert M.fcd(a, b) > 1.0
    with pytest.raises(ValueError, match="at least 2"):
        M.fcd(["CCO"], a)


def test_graph_kernels_and_mmd():
    h1, h2 = np.array([1.0, 1.0]), np.array([0.0, 0.0, 2.0])
    # TV of (.5,.5,0) vs (0,0,1) is 1
    assert M.gaussian_tv(h1, h2, 1.0) == pytest.approx(np.exp(-0.5))
    cycles = [nx.cycle_graph(n) for n in (8, 9, 10)]
    stars = [nx.star_graph(n) for n in (7, 8, 9)]
    same = M.graph_mmds(cycles, cycles)
    assert all(abs(v) < 1e-12 for v in same.values())
    diff = M.graph_mmds(stars, cycles)
    assert diff["clustering"] == 0  # stars and cycles both have no triangles
    assert all(diff[k] > 0.01 for k in ("degree", "spectral", "orbit")), diff
    assert M.graph_mmds([nx.complete_graph(5)], cycles, ["clustering"])["clustering"] > 0.01
    # degree MMD by hand: cycles all have histogram [0,0,1]; star(n) degree hist: n leaves, one hub of degree n
    kyy = 1.0
    kxx = np.mean([[M.gaussian_tv(M.degree_histogram(a), M.degree_histogram(b), 1.0) for b in stars] for a in stars])
    kxy = np.mean([[M.gaussian_tv(M.degree_histogram(a), np.array([0, 0, 1.0]), 1.0) for _ in cycles] for a in stars])
    assert diff["degree"] == pytest.approx(kxx + kyy - 2 * kxy)


def test_orbit_counts_by_hand():
    pytest.importorskip("orca")
    k4 = M.orbit_counts(nx.complete_graph(4))
    assert k4[0] == 3 and k4[3] == 3 and k4[14] == 1 and k4.sum() == 7  # degree, triangles, the 4-clique
    star = M.orbit_counts(nx.star_graph(3))
    # orbit 0: mean degree 1.5; orbit 1 (end of a 2-path): each leaf in 2 -> 1.5; orbit 7 (centre of a 3-star): 1/4
    assert star[0] == 1.5 and star[1] == 1.5 and star[2] == 0.75 and star[6] == 0.75 and star[7] == 0.25
