"""Textbooks and guidelines -> ``text`` chunks for continued pretraining.

Documents (.txt, .md, .html, .pdf, or a JSONL of sections such as the OpenStax export) are read
as a stream of headings and paragraphs, grouped into sections by heading, and each section is
cut into chunks of at most ``chunk_size`` characters (or whitespace tokens, ``unit: tokens``)
that overlap by up to ``chunk_overlap``, breaking at paragraph and sentence ends where possible.
Each chunk keeps its heading path (``["Chapter 1 Heart Failure", "1.1 Definition"]``) in
``meta.annotations["heading_path"]``; ``heading_prefix`` puts the section title (or the whole
path) at the top of the chunk text.

Front and back matter (cover, copyright, contents, preface, index, references...) and
end-of-chapter exercises (which would leak benchmark questions into pretraining data) are
dropped with a reason (``front_matter``, ``back_matter``, ``exercises``): by heading, for any
section under a matching heading, and for PDF pages by their look (a cover page, a copyright
page, a table of contents, an index). ``drop_headings`` overrides the patterns.

Rows are ``meta.phi_status = not_applicable`` (books are not patient records).
"""

from meddata.builders.textbook.assembly import DEFAULT_DROP_HEADINGS, Assembler, MatterRules
from meddata.builders.textbook.blocks import Heading, PageDrop, Para
from meddata.builders.textbook.chunking import Chunker
from meddata.builders.textbook.readers import (
           classify_page,
           html_blocks,
           line_blocks,
           pdf_blocks,
           plain_heading,
)
from meddata.builders.textbook.steps import Textbook, TextbookJsonl, TextbookJsonlParams, TextbookParams

__all__ = ["DEFAULT_DROP_HEADINGS", "Assembler", "Chunker", "Heading", "MatterRules", "PageDrop", "Para", "Textbook",
           "TextbookJsonl", "TextbookJsonlParams", "TextbookParams", "classify_page", "html_blocks", "line_blocks",
           "pdf_blocks", "plain_heading"]
