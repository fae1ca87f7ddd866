"""Test setup: two host devices and strict rank promotion, before jax loads."""

import os

os.environ['XLA_FLAGS'] = (
    os.environ.get('XLA_FLAGS', '')
    + ' --xla_force_host_platform_device_count=2'
).strip()

import jax  # noqa: E402

jax.config.update('jax_numpy_rank_promotion', 'raise')


# Parameterisations that repeat a case already covered by a cheaper one (the
# same code path with another cell, readout or flag), and the two longest
# notebook runs. `make test` (CI) skips them to stay inside CI's 10 minutes on
# 2 cores; `make test-all` runs them.
# A pattern matches the start of a test's node id.
SLOW = (
    'tests/test_streaming.py::test_steps_chunks_and_full_sequence_agree[lstm-mean',
    'tests/test_streaming.py::test_steps_chunks_and_full_sequence_agree[eleatt_lstm-last',
    'tests/test_streaming.py::test_steps_chunks_and_full_sequence_agree[rnn-',
    'tests/test_streaming.py::test_steps_chunks_and_full_sequence_agree[gru-last',
    'tests/test_streaming.py::test_steps_chunks_and_full_sequence_agree[eleatt_lstm-mean',
    'tests/test_streaming.py::test_steps_chunks_and_full_sequence_agree[eleatt_rnn-last',
    'tests/test_streaming.py::test_bfloat16_streaming_agrees_with_full_sequence[eleatt_lstm',
    'tests/test_streaming.py::test_bfloat16_streaming_agrees_with_full_sequence[rnn',
    'tests/test_streaming.py::test_steps_chunks_and_full_sequence_agree[eleatt_rnn-mean',
    'tests/test_dropin.py::test_stock_cells_agree_with_nn_rnn[True-True-MGUCell',
    'tests/test_dropin.py::test_stock_cells_agree_with_nn_rnn[False-',
    'tests/test_dropin.py::test_stock_cells_agree_with_nn_rnn[True-False-',
    'tests/test_dropin.py::test_stock_cells_with_two_batch_dims_and_time_major[LSTM',
    'tests/test_dropin.py::test_stock_cells_with_two_batch_dims_and_time_major[Optimized',
    'tests/test_dropin.py::test_remat_gives_the_same_gradients[False-EleAttLSTMCell',
    'tests/test_dropin.py::test_partitioned_initialisers_on_a_two_device_mesh[EleAttLSTMCell',
    'tests/test_dropin.py::test_partitioned_initialisers_on_a_two_device_mesh[EleAttSimpleCell',
    'tests/test_nnx.py::test_classifier_matches_linen[True-last',
    'tests/test_nnx.py::test_classifier_matches_linen[False-mean',
    'tests/test_nnx.py::test_same_params_same_outputs_as_linen[False-True',
    # NNX streaming: `make test` runs a gated cell with the mean readout (one
    # chunk size; its layers' step and chunk) and the doctests; the plain
    # cells, the last readout, two chunk sizes, the RNN on its own and the
    # layout check run the same shared code.
    'tests/test_nnx_streaming.py::test_classifier_streams_as_its_full_sequence_and_as_linen[gru-last',
    'tests/test_nnx_streaming.py::test_classifier_streams_as_its_full_sequence_and_as_linen[eleatt_lstm-last',
    'tests/test_nnx_streaming.py::test_classifier_streams_as_its_full_sequence_and_as_linen[rnn-mean',
    'tests/test_nnx_streaming.py::test_rnn_step_and_chunk_agree_with_call',
    'tests/test_nnx_streaming.py::test_step_logits_do_not_depend_on_the_layout',
    'tests/test_layers_reliability.py::test_nan_or_inf_in_padding_gives_finite_gradients[inf-',
    'tests/test_layers_reliability.py::test_fused_backward_keeps_float64_precision[eleatt_lstm',
    'tests/test_reproduce.py::test_study_runs_at_tiny_size[nucla_gate_layers',
    'tests/test_reproduce.py::test_study_runs_at_tiny_size[smnist',
    'tests/test_reproduce.py::test_study_runs_at_tiny_size[basicmotions',
    # The longest notebook (integration guide, NNX) and the no-data variant
    # of 02; 01 and 02 with data run in `make test`.
    'tests/test_notebooks.py::test_notebook_runs[03_',
    'tests/test_notebooks.py::test_skeleton_notebook_without_real_data',
    'tests/test_train_reliability.py::test_kill9_at_a_random_step_then_resume',
    # Long runs that keep `make test` inside CI's 10 minutes when left to
    # `make test-all`: real-process fault and multi-process runs, the
    # notebooks, and the remaining cell matrices.
    'tests/test_train_reliability.py::test_two_processes_with_jax_distributed',
    'tests/test_train_reliability.py::test_ctrl_c_stops_two_processes',
    'tests/test_train_faults.py::test_best_k_survives_kill_and_sigterm',
    'tests/test_train_faults.py::test_second_trainer_exits',
    'tests/test_notebooks.py::test_notebook_runs',
    'tests/test_streaming.py::test_steps_chunks_and_full_sequence_agree[gru-mean',
    'tests/test_streaming.py::test_steps_chunks_and_full_sequence_agree[eleatt_gru-last',
    'tests/test_streaming.py::test_bfloat16_streaming_agrees_with_full_sequence[eleatt_gru',
    'tests/test_nnx.py::test_classifier_matches_linen',
    'tests/test_dropin.py::test_stock_cells_agree_with_nn_rnn',
    'tests/test_layers_reliability.py::test_nan_or_inf_in_padding_gives_finite_gradients[nan-EleAtt',
    'tests/test_streaming.py::test_steps_chunks_and_full_sequence_agree[lstm-last',
    'tests/test_nnx.py::test_same_params_same_outputs_as_linen[True',
    'tests/test_nnx.py::test_eleatt_wrapper_of_an_nnx_cell',
    'tests/test_dropin.py::test_stock_cells_with_two_batch_dims',
    'tests/test_dropin.py::test_nn_remat_of_a_cell_is_honoured',
    'tests/test_dropin.py::test_remat_gives_the_same_gradients',
    'tests/test_train_faults.py::test_rerun_with_another_model',
    'tests/test_train_reliability.py::test_signal_saves_a_checkpoint',
    'tests/test_train_faults.py::test_full_disk_stops',
    'tests/test_train_faults.py::test_full_disk_at_the_start',
    'tests/test_train_faults.py::test_full_disk_in_tensorboard_events',
    'tests/test_train_faults.py::test_full_disk_while_writing_the_plots',
    # A benchmark's output format (the pipeline itself is tested elsewhere);
    # it reads real NTU files and is the longest test of `make test` (48 s).
    'tests/test_benchmarks.py::test_input_pipeline_benchmark_reports_every_source',
    # Configs that only rename their base's dataset (dhg28 and shrec28 import
    # dhg14 and shrec14; pmnist is smnist's pixel path permuted; ntu:xset120
    # is ntu:xsub120's reader and recipe on another split).
    'tests/test_train_configs.py::test_config_trains_at_toy_size[dhg28]',
    'tests/test_train_configs.py::test_config_trains_at_toy_size[shrec28]',
    'tests/test_train_configs.py::test_config_trains_at_toy_size[pmnist]',
    'tests/test_train_configs.py::test_config_trains_at_toy_size[ntu:xset120]',
    # The same reader and recipe as ntu:xsub60 and nucla, on another split.
    'tests/test_train_configs.py::test_config_trains_at_toy_size[ntu:xview60]',
    'tests/test_train_configs.py::test_config_trains_at_toy_size[ntu:xsub120]',
    'tests/test_train_configs.py::test_config_trains_at_toy_size[nucla_dev]',
)


def pytest_configure(config):
  config.addinivalue_line(
      'markers', 'slow: a repeat of a covered case; skipped by `make test`'
  )


def pytest_collection_modifyitems(config, items):
  import pytest  # pylint: disable=g-import-not-at-top

  for item in items:
    if item.nodeid.startswith(SLOW):
      item.add_marker(pytest.mark.slow)
