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
