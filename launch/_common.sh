# Sourced by the paper launch scripts from the repo root; not run on its own.
#   seesaw_pick MODEL BATCH SCHEDULE  sets RUN_NAME, DS_CONFIG, RUN_TEMPLATE, RUN_DIR
#   seesaw_resolve DP DATA_MODE       writes RUN_YAML (see seesaw_ds/launch_config.py)

seesaw_die() {
    echo "$(basename "$0"): $*" >&2
    exit 2
}

seesaw_pick() {
    [ "$#" -ge 3 ] \
        || seesaw_die "usage: $0 MODEL BATCH SCHEDULE [TRAIN_ARGS...], e.g. $0 150m 256 seesaw"
    RUN_NAME="$1_b$2_$3"
    DS_CONFIG="${SEESAW_DS_CONFIG:-$PWD/ds_configs/$RUN_NAME.json}"
    RUN_TEMPLATE="${SEESAW_RUN_CONFIG:-launch/run_configs/paper_$1.yaml}"
    RUN_DIR="${SEESAW_RESULTS:-results/paper}/$RUN_NAME"
    case "$RUN_DIR" in /*) ;; *) RUN_DIR="$PWD/$RUN_DIR" ;; esac
    if [ ! -f "$DS_CONFIG" ]; then
        seesaw_die "no DeepSpeed config ds_configs/$RUN_NAME.json; paper runs:" \
            "$(ls ds_configs | sed -n 's/^\(.*_b[0-9]*_.*\)\.json$/\1/p' | tr '\n' ' ')"
    fi
    [ -f "$RUN_TEMPLATE" ] || seesaw_die "no run config $RUN_TEMPLATE (set SEESAW_RUN_CONFIG?)"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
}

seesaw_resolve() {
    RUN_YAML="$RUN_DIR/launch/run_config.yaml"
    "${PYTHON:-python}" -m seesaw_ds.launch_config "$RUN_TEMPLATE" --out "$RUN_YAML" \
        --output-dir "$RUN_DIR" --ds-config "$DS_CONFIG" --dp "$1" --data "${SEESAW_DATA:-$2}" \
        || exit 2
}
