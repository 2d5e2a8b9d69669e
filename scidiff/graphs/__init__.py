"""Graph and molecule generation: PyG/RDKit data, discrete graph diffusion (DiGress), PARD, metrics, guidance.

Imports torch_geometric and RDKit; ``import scidiff`` does not import this subpackage.
"""

from .blocks import block_decomposition, order_by_blocks
from .datasets import (MosesSubset, SyntheticGraphs, community_small_graph, moses_available, moses_data_dir, moses_smiles,
                       planar_graph, sbm_graph, split_indices, synthetic_graphs)
from .discrete import cosine_alpha_bar, forward_probs, limit_distribution, posterior_probs, sample_categorical
from .model import BlockDiffusion, fit, prepare
from .molecules import (MOSES_ATOMS, InvalidMoleculeError, canonical_smiles, data_to_smiles, smiles_to_data, types_to_mol,
                        types_to_smiles)
from .networks import GraphTransformer, structural_features
