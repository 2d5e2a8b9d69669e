"""Graph and molecule generation: PyG/RDKit data, discrete graph diffusion (DiGress), PARD, metrics, guidance.

Imports torch_geometric and RDKit; ``import scidiff`` does not import this subpackage. Lightning lives in
:mod:`scidiff.graphs.lightning` and is not imported here.
"""

from .blocks import block_decomposition, order_by_blocks
from .datasets import (MosesSubset, SyntheticGraphs, community_small_graph, moses_available, moses_data_dir, moses_smiles,
                       planar_graph, load_graphs, save_graphs, sbm_graph, split_indices, synthetic_graphs)
from .discrete import cosine_alpha_bar, forward_probs, limit_distribution, posterior_probs, sample_categorical
from .guidance import (GraphRegressor, cgd_penalty, descriptors, load_regressor, noisy_inputs, property_guidance,
                       r_squared_by_noise, save_regressor, train_regressor)
from .model import BlockDiffusion, fit, load_model, prepare, save_model
from .molecules import (MAX_VALENCE, MOSES_ATOMS, InvalidMoleculeError, canonical_smiles, data_to_smiles, smiles_to_data, types_to_mol,
                        types_to_smiles)
from .networks import GraphTransformer, structural_features

__all__ = [
    "MAX_VALENCE", "MOSES_ATOMS", "BlockDiffusion", "GraphRegressor", "GraphTransformer", "InvalidMoleculeError", "MosesSubset",
    "SyntheticGraphs", "block_decomposition", "canonical_smiles", "cgd_penalty", "community_small_graph",
    "cosine_alpha_bar", "data_to_smiles", "descriptors", "load_regressor", "noisy_inputs", "r_squared_by_noise",
    "save_regressor", "fit", "forward_probs", "limit_distribution", "load_graphs", "load_model", "moses_available",
    "moses_data_dir", "moses_smiles", "order_by_blocks", "planar_graph", "posterior_probs", "prepare", "save_graphs", "save_model",
    "property_guidance", "sample_categorical", "sbm_graph", "smiles_to_data", "split_indices", "structural_features",
    "synthetic_graphs", "train_regressor", "types_to_mol", "types_to_smiles",
]
