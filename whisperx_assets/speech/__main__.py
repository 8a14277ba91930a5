"""One-shot processing without Dagster: `python -m whisperx_assets.speech FILE... --out DIR`.

Writes <stem>.{srt,vtt,txt,tsv,json,aud} and <stem>.{segments,words,turns,facts}.parquet per file.
Bad files are reported and skipped; the exit code is 1 if any file failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from whisperx_assets.speech import EXPORT_FORMATS, MediaError, SpeechConfig, SpeechEngine, export


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m whisperx_assets.speech", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("media/out"))
    parser.add_argument("--formats", default=",".join(EXPORT_FORMATS))
    parser.add_argument("--model", help="Whisper model (default: WHISPER_MODEL or base)")
    parser.add_argument("--language", help="language code; default: detect")
    parser.add_argument("--num-speakers", type=int)
    parser.add_argument("--min-speakers", type=int)
    parser.add_argument("--max-speakers", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    overrides = {k: v for k, v in {"whisper_model": args.model, "language": args.language,
                                    "num_speakers": args.num_speakers, "min_speakers": args.min_speakers,
                                    "max_speakers": args.max_speakers}.items() if v is not None}
    engine = SpeechEngine(SpeechConfig.from_env(**overrides))
    failed = 0
    for path in args.files:
        stem = path.stem.replace(" ", "_") or "media"
        try:
            result = engine.process(path)
        except MediaError as exc:
            print(f"FAILED {exc}", file=sys.stderr)
            failed += 1
            continue
        final = result.combined or result.alignment
        export(final.segments, final.words, args.out, stem, tuple(args.formats.split(",")), result.transcript.language)
        final.segments.to_parquet(args.out / f"{stem}.segments.parquet")
        final.words.to_parquet(args.out / f"{stem}.words.parquet")
        if result.diarization is not None:
            result.diarization.turns.to_parquet(args.out / f"{stem}.turns.parquet")
        result.facts.to_parquet(args.out / f"{stem}.facts.parquet")
        facts = result.facts.set_index("stage")
        print(f"{path}: {result.media.duration:.1f} s, language {result.transcript.language}, "
              f"{len(final.words)} words, {facts['speakers'].get('diarization', 0)} speakers -> {args.out}/{stem}.*")
        for stage, row in facts.iterrows():
            print(f"  {stage:<12} {row['backend']:<40} RTF {row['real_time_factor']:.3f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
