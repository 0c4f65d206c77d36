# How the GPU figures and weights of the two 2026-12-04 leases were made on a lent H200 (15 minutes of device time
# each). The device has torch but not nibabel: its wheel travels in .whl/; the data the recipes and their probe need
# in .gpudata/ (totalseg_ct/labels.nii.gz, brain_tumor_mri/study1/{T1prereg,FLAIRreg}.nii.gz, and icbm152/ from
# data/cache for VoCo's unlabeled MRI, so nilearn need not travel); both folders ignored (.git/info/exclude).
# The tree plus both folders must stay under the 64 MiB a call may carry.
# usage: [NAMES="recipe ..."] [CHECK_BUDGET=s] bash docs/gpu/session.sh first|wait SECONDS
#   first: gpu-check alone, then the recipes' gpu builds in the background beside gpu-test;
#   wait: wait up to SECONDS more for the builds (while the machine is still warm).
# Both pack into $OUT: finished weights, logs, and the last checkpoint of a run the lease cut (build --resume).
# Second lease: NAMES="synthlab-supcon-2d synthlab-voco-2d" CHECK_BUDGET=90 ... first 545 (the compile part still
# ran), then wait 200. Third lease: NAMES=synthlab-supcon-2d CHECK_BUDGET=40
# STUDIES="fewshot-3d-supcon-1shot fewshot-3d-voxnce-1shot" ... first 500, then wait 285.
mode=$1; limit=${2:-400}; t0=$(date +%s)
WORK="${TMPDIR:-$HOME}/synthlab-gpu"  # outside the tree: later calls re-send the tree over it
NAMES=${NAMES:-"synthlab-supcon-2d synthlab-supcon-3d synthlab-voco-2d synthlab-voco-3d synthlab-rasd-2d synthlab-rasd-3d"}
STUDIES=${STUDIES:-}  # GPU studies (synthlab/studies) to run beside the builds, e.g. the 3D few-shot ones
CHECK_BUDGET=${CHECK_BUDGET:-240}  # gpu-check: no part starts after this many seconds (the compile part, ~110 s, starts at ~65 s)
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1 PYTHONHASHSEED=0 SYNTHLAB_DATA=$PWD/.gpudata
pack() {
  (cd $WORK && tar czf $OUT/runlogs.tgz build.log runs/*.out runs/*/log.csv 2>/dev/null)
  (cd $WORK && tar cf $OUT/cut_runs.tar $(for n in $NAMES; do [ -f synthlab/weights/$n.pt ] && [ synthlab/weights/$n.pt -nt started ] \
     || echo runs/$n-gpu/checkpoint.pt; done) 2>/dev/null)  # a run the lease cuts resumes here: build --resume
  (cd $WORK/synthlab/weights && ls -la --time-style=+%T *.pt; tar cf $WORK.tar $(for n in $NAMES; do [ $n.pt -nt $WORK/started ] && echo $n.pt $n.log.csv; done) 2>/dev/null) \
    && split -b 15M -d $WORK.tar $OUT/weights.tar. ; ls -la $OUT
}
if [ $mode = first ] || [ $mode = weights ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target $WORK-site .whl/*.whl || exit 3
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm --format=csv
  export PYTHONPATH=$WORK-site:$PWD
  python3 -c "import torch, nibabel; print(torch.__version__, torch.cuda.get_device_name(), nibabel.__version__)"
  if [ $mode = first ]; then echo "== gpu-check $(date +%T)"
  mkdir -p results; python3 -m synthlab.gpu_check --out $OUT/gpu_check.json --budget $CHECK_BUDGET 2>&1 | tail -20; fi
  echo "== weights start $(date +%T) after $(( $(date +%s) - t0 )) s"
  [ -d .gpudata/icbm152 ] && mkdir -p ~/.cache/synthlab && cp -r .gpudata/icbm152 ~/.cache/synthlab/  # no nilearn needed
  rm -rf $WORK; mkdir -p $WORK; cp -r synthlab tests .gpudata pyproject.toml $WORK/; touch $WORK/started
  (cd $WORK && PYTHONPATH=$WORK-site:$WORK setsid nohup python3 -m synthlab.shipped build $NAMES --profile gpu \
     --jobs $(echo $NAMES | wc -w) --runs $WORK/runs > $WORK/build.log 2>&1 < /dev/null &)
  for s in $STUDIES; do echo "$s"; done > $WORK/studies.todo  # GPU studies, one after another, beside the builds
  [ -n "$STUDIES" ] && (cd $WORK && PYTHONPATH=$WORK-site:$WORK OMP_NUM_THREADS=2 setsid nohup bash -c \
     'for s in $(cat studies.todo); do python3 -m synthlab.studies run $s --workers 4 > $s.out 2>&1; done' \
     > /dev/null 2>&1 < /dev/null &)
  echo "== gpu-test $(date +%T)"
  python3 -m pytest -q -p no:cacheprovider tests/test_device.py --device cuda 2>&1 | tail -15 | tee $OUT/gpu_test.log
fi
export PYTHONPATH=$WORK-site:$PWD
busy() { pgrep -f "synthlab.shipped build" >/dev/null || pgrep -f "synthlab.studies run" >/dev/null; }
while busy && [ $(( $(date +%s) - t0 )) -lt $limit ]; do sleep 5; done
echo "== $(date +%T) after $(( $(date +%s) - t0 )) s; build running: $(pgrep -f 'synthlab.shipped build' | wc -l)," \
  "studies running: $(pgrep -f 'synthlab.studies run' | wc -l)"
for s in $(cat $WORK/studies.todo 2>/dev/null); do echo "$s: $(tail -c 600 $WORK/$s.out | tr '\r' '\n' | tail -4)"
  cp $WORK/synthlab/studies/$s.json $OUT/ 2>/dev/null; cp $WORK/$s.out $OUT/ 2>/dev/null; done
tail -15 $WORK/build.log; for f in $WORK/runs/*.out; do echo "$f: $(tail -c 300 $f | tr '\r' '\n' | tail -2)"; done
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv
pack
