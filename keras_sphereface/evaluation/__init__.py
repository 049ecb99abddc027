"""keras_sphereface.evaluation: face verification exactly as the SphereFace release, ROC, Fisher score.

- `evaluate_lfw`, `evaluate_pairs`, `angular_fisher_score_of_folder`: what `ksf eval lfw|pairs|afs` run.
- `read_pairs` / `parse_pairs`: LFW `pairs.txt` and generic `path1 path2 same [fold]` lists.
- `verify_embeddings`, `verify_features`, `verify_scores`: k-fold verification under the
  `sphereface`, `summed` and `plain` protocols (`PROTOCOLS`).
- `roc_curve`, `roc_summary`, `tar_at_far`: ROC, AUC, EER, TAR at FAR.
- `angular_fisher_score`: the SphereFace paper's AFS.
- `evaluate_bin_files` (`ksf eval bin`): insightface `.bin` sets under insightface's protocol
  (`verify_insightface`) and the SphereFace one (`evaluate_bin_set`: one set, a loaded embedder);
  `make_bin` (`ksf make-bin`) writes such a set.
- `evaluate_identification` (`ksf eval identify`): 1:N closed-set CMC and open-set DIR@FAR
  (`identify_embeddings`, `lfw_identification_split`, `cmc_curve` in `identification.py`).
- `make_source`: the `FaceSource` of a dataset folder (image folder, alignment mode, landmarks).
- `EmbeddingOptions`: alignment (`EVAL_ALIGN_MODES`), preprocessing, batch size and cache of an evaluation.

Models are loaded and run by `keras_sphereface.inference` (`load_embedder`, `embed_images`).
"""

from keras_sphereface.evaluation.afs import angular_fisher_score_of_folder
from keras_sphereface.evaluation.bin_eval import check_bin_model_size, evaluate_bin_files, evaluate_bin_set
from keras_sphereface.evaluation.bin_make import make_bin
from keras_sphereface.evaluation.fisher import angular_fisher_score
from keras_sphereface.evaluation.identification import (
    DEFAULT_IDENTIFICATION_FARS,
    DEFAULT_RANKS,
    IdentificationResult,
    IdentificationSplit,
    cmc_curve,
    identify_embeddings,
    lfw_identification_split,
)
from keras_sphereface.evaluation.identify import evaluate_identification
from keras_sphereface.evaluation.insightface_protocol import InsightfaceResult, verify_insightface
from keras_sphereface.evaluation.pairs import PairList, parse_pairs, read_pairs
from keras_sphereface.evaluation.protocol import (
    PROTOCOLS,
    Protocol,
    VerificationResult,
    best_threshold,
    verify_embeddings,
    verify_features,
    verify_scores,
)
from keras_sphereface.evaluation.roc import RocSummary, roc_curve, roc_summary, tar_at_far
from keras_sphereface.evaluation.sources import EVAL_ALIGN_MODES, EmbeddingOptions, make_source
from keras_sphereface.evaluation.verification import evaluate_lfw, evaluate_pairs

__all__ = [
    "DEFAULT_IDENTIFICATION_FARS",
    "DEFAULT_RANKS",
    "EVAL_ALIGN_MODES",
    "PROTOCOLS",
    "EmbeddingOptions",
    "IdentificationResult",
    "IdentificationSplit",
    "InsightfaceResult",
    "PairList",
    "Protocol",
    "RocSummary",
    "VerificationResult",
    "angular_fisher_score",
    "angular_fisher_score_of_folder",
    "best_threshold",
    "check_bin_model_size",
    "cmc_curve",
    "evaluate_bin_files",
    "evaluate_bin_set",
    "evaluate_identification",
    "evaluate_lfw",
    "evaluate_pairs",
    "identify_embeddings",
    "lfw_identification_split",
    "make_bin",
    "make_source",
    "parse_pairs",
    "read_pairs",
    "roc_curve",
    "roc_summary",
    "tar_at_far",
    "verify_embeddings",
    "verify_features",
    "verify_insightface",
    "verify_scores",
]
