"""The benchmark's header names the CPU and the vector extensions it reports."""
from benchmarks import bench_train_step


def test_cpu_facts_names_the_model_and_its_vector_extensions(tmp_path):
  cpuinfo = tmp_path / 'cpuinfo'
  cpuinfo.write_text('processor\t: 0\nmodel name\t: AMD EPYC 7B13\n'
                     'flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_bf16 ht\n\n'
                     'processor\t: 1\nmodel name\t: AMD EPYC 7B13\n'
                     'flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_bf16 ht\n')
  assert bench_train_step.cpu_facts(str(cpuinfo)) == 'AMD EPYC 7B13 (avx2 fma avx512f avx512_bf16)'
  cpuinfo.write_text('model name\t: Old\nflags\t\t: fpu sse2\n')
  assert bench_train_step.cpu_facts(str(cpuinfo)) == 'Old (no listed vector extensions)'


def test_bfloat16_is_measured_only_where_the_cpu_has_bfloat16_instructions(tmp_path):
  cpuinfo = tmp_path / 'cpuinfo'
  for flags, expected in [('fpu avx2 fma', ('float32',)),
                          ('avx2 avx512f', ('float32',)),
                          ('avx2 avx512f avx512_bf16', ('float32', 'bfloat16')),
                          ('avx2 amx_bf16 amx_tile', ('float32', 'bfloat16'))]:
    cpuinfo.write_text(f'model name\t: X\nflags\t\t: {flags}\n')
    _, found = bench_train_step.cpu_info(str(cpuinfo))
    assert bench_train_step.hardware_precisions(found) == expected, flags
  cpuinfo.write_text('CPU implementer\t: 0x41\nFeatures\t: fp asimd sve bf16\n')  # Arm.
  assert bench_train_step.hardware_precisions(bench_train_step.cpu_info(str(cpuinfo))[1]) == (
      'float32', 'bfloat16')
