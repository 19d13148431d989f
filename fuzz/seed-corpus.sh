#!/usr/bin/env bash
# Writes seed inputs derived from common/tests/vectors/ into fuzz/corpus/<target>/
# (git-ignored), laid out as each target reads its input. Optional: every
# target also starts from nothing. Needs jq and xxd.
set -euo pipefail

FUZZ=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
V="$FUZZ/../common/tests/vectors"
C="$FUZZ/corpus"

field() { jq -r ".$2" "$V/$1"; }
# seed TARGET NAME HEX...: one corpus file from concatenated hex strings.
seed() {
    local target=$1 name=$2
    shift 2
    mkdir -p "$C/$target"
    printf '%s' "$@" | xxd -r -p >"$C/$target/$name"
}
u64hex() { printf '%016x' "$1"; }
u8hex() { printf '%02x' "$1"; }
strhex() { printf '%s' "$1" | xxd -p | tr -d '\n'; }

for f in attributes_file attributes_symlink; do
    plain=$(field "$f.json" plaintext)
    seed attributes_decode "$f" "$plain"
    node=$(field "$f.json" node)
    version=$(u64hex "$(field "$f.json" version)")
    seed attributes_open "$f-plain" "$node" "$version" "$plain"
    seed attributes_open "$f-sealed" "$node" "$version" "$(field "$f.json" sealed)"
done

for f in name_ascii name_utf8 name_max_len; do
    name=$(field "$f.json" name)
    seed name_decrypt "$f" "$(field "$f.json" parent)" "$(field "$f.json" child)" \
        "$(field "$f.json" tag)" "$(u8hex $((${#name} / 2)))" "$name" "$(field "$f.json" encrypted)"
done

for f in wrap_password wrap_recovery; do
    account=$(field "$f.json" account)
    seed keywrap_unwrap "$f" "$(u8hex ${#account})" "$(strhex "$account")" "$(field "$f.json" wrapped)"
done

for f in wrap_recovery fail_recovery_typo; do
    mkdir -p "$C/recovery_parse"
    field "$f.json" recovery_key_text | tr -d '\n' >"$C/recovery_parse/$f"
done

# content_decrypt: w0 with the top bit set (length from the ciphertext), then
# offset 0, len 1, segments 0..1, index 0, the vector's object offset, 1.
for f in content_empty content_one_byte; do
    words=$(u64hex 0x8000000000000000)$(u64hex 0)$(u64hex 1)$(u64hex 0)$(u64hex 1)$(u64hex 0)
    words+=$(u64hex "$(field "$f.json" offset)")$(u64hex 1)
    seed content_decrypt "$f" "$words" "$(xxd -p "$V/$f.bin" | tr -d '\n')"
done

# content_roundtrip: 0, 1 and 3 segments and a bit (w0 = len << 8 | 3 is the
# "any length" class).
for len in 0 1 65536 196709; do
    seed content_roundtrip "len-$len" "$(u64hex $(((len << 8) | 3)))" "$(u64hex 65530)" "$(u64hex 70000)" \
        "$(u64hex 40)" "$(u64hex 1)" "$(strhex 'securevault')"
done

# codec_reader: a 16-byte buffer read as u8, u16, u32, bytes(5), u64, finish.
seed codec_reader basic 0010 000102030405060708090a0b0c0d0e0f 090a0b0105 0c

echo "seeds written under $C"
