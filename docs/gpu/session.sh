# How the 2026-12-04 GPU figures and weights were made on a lent H200 (15 minutes of device time in all).
# The device has torch but not nibabel/nilearn: their wheels travel in .whl/, the two data files the recipes
# need in .gpudata/ (both ignored, listed in .git/info/exclude). Calls: `bash docs/gpu/session.sh first 540` (gpu-check alone, then the
# weights in the background beside gpu-test), then `bash docs/gpu/session.sh wait N` while the machine is warm.
# usage: bash docs/gpu/session.sh first|wait SECONDS   (first: gpu-check alone, then the weights in the background
# beside gpu-test; wait: wait up to SECONDS for the weights). Both pack what exists into $OUT at the end.
mode=$1; limit=${2:-400}; t0=$(date +%s)
WORK="${TMPDIR:-$HOME}/synthlab-gpu"  # outside the tree: later calls re-send the tree over it
NAMES="synthlab-supcon-2d synthlab-supcon-3d synthlab-voco-2d synthlab-voco-3d synthlab-rasd-2d synthlab-rasd-3d"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1 PYTHONHASHSEED=0 SYNTHLAB_DATA=$PWD/.gpudata
pack() {
  (cd $WORK && tar czf $OUT/runlogs.tgz build.log runs/*.out runs/*/log.csv 2>/dev/null)
  (cd $WORK/synthlab/weights && ls -la --time-style=+%T *.pt; tar cf $WORK.tar $(for n in $NAMES; do [ $n.pt -nt $WORK/started ] && echo $n.pt $n.log.csv; done) 2>/dev/null) \
    && split -b 15M -d $WORK.tar $OUT/weights.tar. ; ls -la $OUT
}
if [ $mode = first ] || [ $mode = weights ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target $WORK-site .whl/*.whl || exit 3
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm --format=csv
  export PYTHONPATH=$WORK-site:$PWD
  python3 -c "import torch, nibabel; print(torch.__version__, torch.cuda.get_device_name(), nibabel.__version__)"
  if [ $mode = first ]; then echo "== gpu-check $(date +%T)"
  mkdir -p results; python3 -m synthlab.gpu_check --out $OUT/gpu_check.json --budget 240 2>&1 | tail -20; fi
  echo "== weights start $(date +%T) after $(( $(date +%s) - t0 )) s"
  rm -rf $WORK; mkdir -p $WORK; cp -r synthlab tests .gpudata pyproject.toml $WORK/; touch $WORK/started
  (cd $WORK && PYTHONPATH=$WORK-site:$WORK setsid nohup python3 -m synthlab.shipped build $NAMES --profile gpu \
     --jobs 6 --runs $WORK/runs > $WORK/build.log 2>&1 < /dev/null &)
  echo "== gpu-test $(date +%T)"
  python3 -m pytest -q -p no:cacheprovider tests/test_device.py --device cuda 2>&1 | tail -15 | tee $OUT/gpu_test.log
fi
export PYTHONPATH=$WORK-site:$PWD
while pgrep -f "synthlab.shipped build" >/dev/null && [ $(( $(date +%s) - t0 )) -lt $limit ]; do sleep 5; done
echo "== $(date +%T) after $(( $(date +%s) - t0 )) s; build running: $(pgrep -f 'synthlab.shipped build' | wc -l)"
tail -15 $WORK/build.log; for f in $WORK/runs/*.out; do echo "$f: $(tail -c 300 $f | tr '\r' '\n' | tail -2)"; done
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv
pack
