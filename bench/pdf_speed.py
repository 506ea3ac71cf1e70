"""PDF read throughput: pages per second of ``ingest.load`` (read, extract, clean; no embedding).

    python bench/pdf_speed.py [N_FILES] [PAGES_PER_FILE]   (default: 20 files of 20 pages)

Generates the PDFs with reportlab (a running header, a heading, ~40 wrapped lines of English
text and a page-number footer on every page) in a temporary directory, then times ``load``
on them, best of three runs. Also prints the chunking time for comparison.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SENTENCES = [
    "High blood pressure often has no symptoms, so adults should have it measured yearly.",
    "Eating less salt lowers blood pressure within a few weeks for most people.",
    "Walking briskly for thirty minutes on most days helps the heart and the mind.",
    "A reading above 140 over 90 on two separate days is called hypertension.",
]


def write_pdf(path: Path, pages: int, seed: int) -> None:
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), invariant=1)
    c.setTitle(f"Bench article {seed}")
    for page in range(1, pages + 1):
        c.setFont("Helvetica", 9)
        c.drawString(72, 800, "Bench Journal of Medicine, Vol. 7")
        c.setFont("Helvetica-Bold", 16)
        c.drawString(72, 770, f"Section {seed}.{page}")
        c.setFont("Helvetica", 11)
        y = 745
        for line in range(40):
            c.drawString(72, y, SENTENCES[(seed + page + line) % len(SENTENCES)])
            y -= 16
        c.setFont("Helvetica", 9)
        c.drawString(280, 30, f"Page {page} of {pages}")
        c.showPage()
    c.save()


def main() -> None:
    from medcite.ingest import ChunkSettings, chunk_documents, load

    n_files = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    per_file = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for n in range(n_files):
            write_pdf(root / f"a{n:04d}.pdf", per_file, n)
        pages = n_files * per_file
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            result = load([root])
            times.append(time.perf_counter() - t0)
        assert all(r.status == "ingested" for r in result.reports), result.reports
        t0 = time.perf_counter()
        chunks = chunk_documents(result, ChunkSettings())
        t_chunk = time.perf_counter() - t0
    best = min(times)
    chars = sum(len(s.text) for s in result.sources)
    print(f"{n_files} PDFs x {per_file} pages = {pages} pages, {chars:,} characters")
    print(f"load (read + extract + clean): {best:.2f} s best of 3 = {pages / best:.0f} pages/s")
    print(f"chunk: {t_chunk:.2f} s ({len(chunks)} passages)")


if __name__ == "__main__":
    main()
