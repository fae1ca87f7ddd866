"""The full set of configuration fields, with their defaults.

Every experiment config in this folder starts from `get_config()` here and
changes values only: a key that is not defined here does not exist, and
setting it (``--config.model.cel=...``) is an error that lists the valid keys.
Defaults are the paper's skeleton settings (3 x 100 EleAtt-GRU, dropout 0.5,
Adam 0.005, clip 1, batch 256), with a cosine schedule. Every value is checked
at start-up by `train.config_lib.validate`.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """Returns the default (schema) config."""
  config = ml_collections.ConfigDict()

  # ------------------------------------------------------------------ data --
  config.data = data = ml_collections.ConfigDict()
  # tfds name '<builder>/<config>' of an eleatt_jax.datasets builder, e.g.
  # 'sequential_mnist/mnist5k_row', 'ntu_rgbd60/xsub', 'sequence_npz'.
  data.name = 'sequential_mnist/mnist5k_row'
  # Where built datasets are kept (tfds data_dir). '' = tfds' default
  # (~/tensorflow_datasets), except for sequence_npz: WORKDIR/tfds. The run
  # builds the dataset there on first use.
  data.data_dir = ''
  # The user's download (tfds manual_dir) that the builder reads on first use.
  data.manual_dir = ''
  # sequence_npz only: the folder with train.npz / test.npz [/ validation.npz]
  # (the same as manual_dir; either may be given).
  data.path = ''
  # Split trained on.
  data.train_split = 'train'
  # Training reads only this many examples of each class of train_split,
  # drawn with `seed` (a small-data experiment); 0: all of them.
  data.train_per_class = 0
  # Split evaluated during training: model selection (best-k checkpoints) and
  # the reduce-on-plateau signal. Never the test split: every builder has a
  # 'validation' split carved from its training data (or shipped with it).
  data.eval_split = 'validation'
  # Split of the final evaluation written to WORKDIR/eval_results.json.
  data.test_split = 'test'
  # 'sequence' (MNIST, sequence-npz: x <f>[T, D]), 'skeleton' (x <f>[T, J, 3]
  # or [T, M, J, 3]: translation, view alignment, augmentation, flattening) or
  # 'video' (frames <uint8>[T, H, W, C] of video_folder / moving_digits: / 255
  # and flattened to [T, H*W*C]; needs model.frame_encoder='cnn').
  data.preprocess = 'sequence'
  # Frames per example; 0 keeps the source's length (all examples equally
  # long) for 'sequence' and is invalid for 'skeleton'.
  data.num_frames = 0
  # 'pad': zero-pad to num_frames and pass lengths to the RNN; 'sample': one
  # frame from each of num_frames uniform segments (random offsets in
  # training, centred in evaluation).
  data.temporal = 'pad'
  # Skeleton only: 0-based joint of body 0 in the first valid frame moved to
  # the origin (1: spine; NTU, N-UCLA, SYSU; 1: palm for DHG/SHREC); -1: none.
  data.center_joint = 1
  # Skeleton only, view alignment of each sequence by its first frame:
  # 'none'; 'shoulders' or 'hips' (rotate about the vertical axis so that
  # that joint pair is parallel to x); 'body' (rotate into the body's own 3-D
  # frame: x along the hips, y up the spine).
  data.align_view = 'none'
  # Skeleton only: scale each sequence so that its torso is 0.5 m long.
  data.normalize_scale = False
  # Skeleton only: random augmentation in training (the "(aug.)" runs).
  data.augment = False
  # Augmentation: rotation about each axis, uniform in +-max_angle radians.
  data.max_angle = 0.3
  # Augmentation: rotation about the vertical axis, uniform in +-max_yaw
  # radians, instead of +-max_angle; < 0: use max_angle.
  data.max_yaw = -1.0
  # Augmentation: isotropic scaling by a factor uniform in 1 +- max_scale.
  data.max_scale = 0.0
  # Augmentation: std (in metres) of Gaussian noise added to each joint.
  data.jitter_sigma = 0.0
  # Skeleton only: feature streams per frame, joined by '+', in order:
  # 'position' (joints), 'velocity' (frame differences), 'bone' (joint minus
  # its parent); e.g. 'position+velocity' doubles the input.
  data.streams = 'position'
  # Skeleton only, training: each sequence is first cut to a random window
  # of a fraction of its frames drawn from [temporal_crop, 1]; 1.0: no cut.
  data.temporal_crop = 1.0
  # Skeleton, temporal='sample' only: evaluation averages the class
  # probabilities of this many temporal samplings (clip k takes each segment
  # at offset (k + 0.5) / test_clips); 1: the centred one only.
  data.test_clips = 1
  # Skeleton only: evaluation also averages over these rotations (radians)
  # about the vertical axis of every clip, e.g. (-0.5, 0.5); (): none.
  data.test_yaws = ()
  # Threads of the grain pipeline that read and preprocess examples.
  data.num_threads = 4
  # Elements those threads read ahead.
  data.prefetch = 64

  # ----------------------------------------------------------------- model --
  config.model = model = ml_collections.ConfigDict()
  # eleatt_gru | gru | eleatt_lstm | lstm | eleatt_rnn | rnn (the plain names
  # have no gate: the paper's baselines are one flag apart).
  model.cell = 'eleatt_gru'
  # Features of each recurrent layer (the paper's skeleton models: 3 x 100).
  model.hidden_sizes = (100, 100, 100)
  # Layers that carry an EleAtt gate: 'all', 'none', or k for the first k
  # (the paper's ablation).
  model.gate_layers = 'all'
  # The value every EleAtt gate's bias b_a starts at: 0 starts the gate at
  # sigmoid(0) = 0.5 (every input halved); 3 at 0.95, near pass-through (the
  # untrained EleAtt network is then almost the plain one).
  model.gate_bias_init = 0.0
  # Dropout on each layer's output, in training.
  model.dropout_rate = 0.5
  # 'mean': per-step logits averaged over valid frames; 'last': last valid.
  model.readout = 'mean'
  # Run each layer both ways and concatenate.
  model.bidirectional = False
  # Computation dtype: 'float32' or 'bfloat16' (parameters stay float32).
  model.dtype = 'float32'
  # lax.scan unroll of each recurrent layer.
  model.unroll = 1
  # 'none': the RNN reads the data's features; 'cnn': a small CNN encodes
  # each video frame (the same weights for every frame), trained with the RNN
  # (eleatt_jax.frame_encoders.VideoClassifier; data.preprocess='video').
  model.frame_encoder = 'none'
  # 'cnn': output channels of each 3x3 stride-2 convolution stage.
  model.cnn_features = (16, 32, 32)
  # 'cnn': size of each frame's feature vector (the RNN's input).
  model.frame_features = 64
  # 'cnn': recompute the CNN's activations in the backward pass (less memory
  # for long clips, more compute).
  model.remat = False

  # ------------------------------------------------------------- optimizer --
  config.optim = optim = ml_collections.ConfigDict()
  # 'adam', 'adamw' (decoupled weight decay) or 'sgd' (with momentum).
  optim.optimizer = 'adam'
  # Peak learning rate.
  optim.learning_rate = 0.005
  # 'constant', 'cosine' (to 0 at the last step), 'step' (x decay_factor at
  # each of decay_steps) or 'plateau' (x decay_factor when the eval_split
  # loss has not improved for plateau_patience epochs; optax.contrib). Cosine
  # by default: a fixed schedule needs no decision from any split.
  optim.schedule = 'cosine'
  # Linear warm-up steps from 0 (constant, cosine and step schedules).
  optim.warmup_steps = 0
  # 'step' schedule: the steps at which the rate is multiplied by decay_factor.
  optim.decay_steps = ()
  # Factor of the 'step' and 'plateau' schedules.
  optim.decay_factor = 0.1
  # 'plateau': epochs without improvement of the eval_split loss before the
  # rate is reduced (counted in epochs, not evaluations, so that a tiny data
  # set evaluated every few steps does not decay in its first epochs).
  optim.plateau_patience = 10.0
  # 'plateau': epochs to wait after a reduction.
  optim.plateau_cooldown = 0.0
  # 'plateau': the rate never falls below learning_rate * plateau_min_scale.
  optim.plateau_min_scale = 1e-3
  # Weight decay (decoupled for adamw; added to the gradient for adam/sgd).
  optim.weight_decay = 0.0
  # Label smoothing of the training loss (0: off; evaluation is unsmoothed).
  optim.label_smoothing = 0.0
  # Evaluation (validation, best-k checkpoints, test) uses an exponential
  # moving average of the parameters with this decay per step (0: off, the
  # parameters themselves). Not with the 'plateau' schedule.
  optim.ema_decay = 0.0
  # Momentum of 'sgd'.
  optim.momentum = 0.9
  # Gradients are clipped to this global norm; 0 disables clipping.
  optim.grad_clip_norm = 1.0

  # -------------------------------------------------------------- training --
  # Global batch size (all hosts and devices together).
  config.batch_size = 256
  # Global batch size of evaluation (the last batch is padded and masked).
  config.eval_batch_size = 256
  # Training steps; 0 derives it from num_epochs.
  config.num_train_steps = 0
  # Epochs over train_split, used when num_train_steps is 0.
  config.num_epochs = 100
  # Steps between progress lines / metrics.jsonl lines / TensorBoard points.
  config.log_every_steps = 50
  # Steps between evaluations on eval_split; 0: once an epoch.
  config.eval_every_steps = 0
  # Steps between checkpoints (each one evaluated on eval_split first, for the
  # best-k ranking); 0: at every evaluation. A last one is saved at the end.
  config.checkpoint_every_steps = 0
  # Checkpoints kept: the best keep_best by eval_split accuracy, plus the latest.
  config.keep_best = 3
  # Checkpoint evaluated at the end and written to eval_results.json:
  # 'latest' (the final parameters) or 'best' (best eval_split accuracy).
  config.final_checkpoint = 'latest'
  # Seed of the parameters, dropout, shuffling and augmentation.
  config.seed = 0
  # Data parallelism: 'jit' (a Mesh over all devices, NamedSharding of the
  # batch) or 'pmap' (pmap with pmean); both run the same train_step.
  config.parallel = 'jit'
  # Progress display: 'auto' (a bar on a terminal, lines otherwise), 'bar',
  # 'lines' or 'none'.
  config.progress = 'auto'
  # Write TensorBoard event files to WORKDIR/tensorboard.
  config.tensorboard = True
  # Save curves.png and confusion_matrix.png in WORKDIR at the end.
  config.plots = True
  # A rerun on a WORKDIR whose config.json differs in the model or data is
  # refused; True moves the old run into WORKDIR/replaced/N first (nothing is
  # deleted).
  config.overwrite = False
  # data.eval_split equal to data.test_split is refused at start-up (the test
  # data would choose the schedule and the checkpoint, and the final accuracy
  # would no longer estimate accuracy on unseen data); True allows it.
  config.allow_test_selection = False
  # Testing aid: make the batch of step N (1-based) NaN, to see the fail-fast;
  # -1: off.
  config.inject_nan_at_step = -1
  return config
