//! A small page-layout layer over `pdf-writer`: A4 pages drawn top-down, two embedded DejaVu Sans
//! faces (subset to the glyphs used), text measured with the fonts' own advance widths, and a
//! footer stamped on every page once the page count is known.

use std::collections::BTreeMap;

use pdf_writer::types::{CidFontType, FontFlags, LineCapStyle, SystemInfo, UnicodeCmap};
use pdf_writer::{Content, Filter, Finish, Name, Pdf, Rect, Ref, Str, TextStr};
use subsetter::GlyphRemapper;

pub const PAGE_W: f32 = 595.28;
pub const PAGE_H: f32 = 841.89;
pub const MARGIN_X: f32 = 50.0;
pub const TOP: f32 = 56.0;
/// Content never goes below this distance from the top; the footer lives underneath.
pub const BOTTOM: f32 = PAGE_H - 64.0;
pub const CONTENT_W: f32 = PAGE_W - 2.0 * MARGIN_X;

static REGULAR_TTF: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
static BOLD_TTF: &[u8] = include_bytes!("../assets/fonts/DejaVuSans-Bold.ttf");

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Font {
    Regular,
    Bold,
}

/// RGB in 0–1.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct Rgb(pub f32, pub f32, pub f32);

impl Rgb {
    pub const fn hex(v: u32) -> Self {
        Self(((v >> 16) & 0xff) as f32 / 255.0, ((v >> 8) & 0xff) as f32 / 255.0, (v & 0xff) as f32 / 255.0)
    }
}

pub const BLACK: Rgb = Rgb::hex(0x1f2933);
pub const MUTED: Rgb = Rgb::hex(0x616e7c);
pub const RULE: Rgb = Rgb::hex(0xcbd2d9);

struct Face {
    face: ttf_parser::Face<'static>,
    data: &'static [u8],
    base_name: &'static [u8],
    per_em: f32,
    remapper: GlyphRemapper,
    /// New glyph id → the text it stands for (for text extraction).
    unicode: BTreeMap<u16, char>,
}

impl Face {
    fn load(data: &'static [u8], base_name: &'static [u8]) -> Self {
        // The fonts are compiled in; a parse failure is a broken build, caught by every test.
        let face = ttf_parser::Face::parse(data, 0).expect("the embedded font parses");
        let per_em = f32::from(face.units_per_em());
        Self { face, data, base_name, per_em, remapper: GlyphRemapper::new(), unicode: BTreeMap::new() }
    }

    fn glyph(&self, c: char) -> ttf_parser::GlyphId {
        self.face.glyph_index(c).unwrap_or(ttf_parser::GlyphId(0))
    }

    /// Advance of `c` in thousandths of the font size.
    fn advance(&self, c: char) -> f32 {
        let g = self.glyph(c);
        f32::from(self.face.glyph_hor_advance(g).unwrap_or(0)) * 1000.0 / self.per_em
    }

    /// Encodes `text` as two-byte CIDs of the subset, recording every glyph it uses.
    fn encode(&mut self, text: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len() * 2);
        for c in text.chars() {
            let new = self.remapper.remap(self.glyph(c).0);
            self.unicode.entry(new).or_insert(c);
            out.extend_from_slice(&new.to_be_bytes());
        }
        out
    }
}

/// Horizontal alignment of a text run relative to its `x`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Align {
    Left,
    Right,
    Center,
}

/// How a text run looks and where it sits relative to its `x`.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct Style {
    pub font: Font,
    pub size: f32,
    pub color: Rgb,
    pub align: Align,
}

impl Style {
    pub const fn new(font: Font, size: f32, color: Rgb, align: Align) -> Self {
        Self { font, size, color, align }
    }
}

pub struct Doc {
    regular: Face,
    bold: Face,
    pages: Vec<Content>,
    /// Distance of the layout cursor from the top of the current page.
    pub y: f32,
}

impl Default for Doc {
    fn default() -> Self {
        Self::new()
    }
}

impl Doc {
    pub fn new() -> Self {
        Self {
            regular: Face::load(REGULAR_TTF, b"DejaVuSans"),
            bold: Face::load(BOLD_TTF, b"DejaVuSans-Bold"),
            pages: vec![Content::new()],
            y: TOP,
        }
    }

    fn face(&self, font: Font) -> &Face {
        match font {
            Font::Regular => &self.regular,
            Font::Bold => &self.bold,
        }
    }

    fn page(&mut self) -> &mut Content {
        self.pages.last_mut().expect("a document always has a page")
    }

    pub fn new_page(&mut self) {
        self.pages.push(Content::new());
        self.y = TOP;
    }

    /// Starts a new page unless `height` more points fit on this one.
    pub fn ensure(&mut self, height: f32) -> bool {
        if self.y + height > BOTTOM {
            self.new_page();
            true
        } else {
            false
        }
    }

    pub fn gap(&mut self, height: f32) {
        self.y += height;
    }

    pub fn width(&self, text: &str, font: Font, size: f32) -> f32 {
        let face = self.face(font);
        text.chars().map(|c| face.advance(c)).sum::<f32>() * size / 1000.0
    }

    /// Draws `text` with its baseline `baseline` points below the top of the page.
    pub fn text(&mut self, x: f32, baseline: f32, text: &str, style: Style) {
        let Style { font, size, color, align } = style;
        if text.is_empty() {
            return;
        }
        let x = match align {
            Align::Left => x,
            Align::Right => x - self.width(text, font, size),
            Align::Center => x - self.width(text, font, size) / 2.0,
        };
        let (encoded, name) = match font {
            Font::Regular => (self.regular.encode(text), Name(b"F1")),
            Font::Bold => (self.bold.encode(text), Name(b"F2")),
        };
        let page = self.page();
        page.set_fill_rgb(color.0, color.1, color.2);
        page.begin_text();
        page.set_font(name, size);
        page.next_line(x, PAGE_H - baseline);
        page.show(Str(&encoded));
        page.end_text();
    }

    /// Text truncated with an ellipsis so that it fits in `max_w`.
    pub fn fit(&self, text: &str, font: Font, size: f32, max_w: f32) -> String {
        if self.width(text, font, size) <= max_w {
            return text.to_string();
        }
        let ellipsis = self.width("…", font, size);
        let mut out = String::new();
        let mut w = 0.0;
        for c in text.chars() {
            let cw = self.width(c.encode_utf8(&mut [0; 4]), font, size);
            if w + cw + ellipsis > max_w {
                break;
            }
            w += cw;
            out.push(c);
        }
        out.push('…');
        out
    }

    /// Greedy word wrap; words longer than a line are broken between characters.
    pub fn wrap(&self, text: &str, font: Font, size: f32, max_w: f32) -> Vec<String> {
        let mut lines = Vec::new();
        for paragraph in text.split('\n') {
            let mut line = String::new();
            for word in paragraph.split_whitespace() {
                let candidate = if line.is_empty() { word.to_string() } else { format!("{line} {word}") };
                if self.width(&candidate, font, size) <= max_w {
                    line = candidate;
                    continue;
                }
                if !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                }
                for c in word.chars() {
                    let mut next = line.clone();
                    next.push(c);
                    if !line.is_empty() && self.width(&next, font, size) > max_w {
                        lines.push(std::mem::take(&mut line));
                        line.push(c);
                    } else {
                        line = next;
                    }
                }
            }
            lines.push(line);
        }
        lines
    }

    /// A wrapped paragraph at the cursor, breaking pages between lines.
    pub fn paragraph(&mut self, x: f32, max_w: f32, text: &str, font: Font, size: f32, color: Rgb) {
        let leading = size * 1.45;
        for line in self.wrap(text, font, size, max_w) {
            self.ensure(leading);
            self.text(x, self.y + size, &line, Style::new(font, size, color, Align::Left));
            self.y += leading;
        }
    }

    /// A filled rectangle; `top` is measured from the top of the page.
    pub fn fill_rect(&mut self, x: f32, top: f32, w: f32, h: f32, color: Rgb) {
        let page = self.page();
        page.set_fill_rgb(color.0, color.1, color.2);
        page.rect(x, PAGE_H - top - h, w, h);
        page.fill_nonzero();
    }

    pub fn stroke_rect(&mut self, x: f32, top: f32, w: f32, h: f32, color: Rgb, width: f32) {
        let page = self.page();
        page.set_stroke_rgb(color.0, color.1, color.2);
        page.set_line_width(width);
        page.rect(x, PAGE_H - top - h, w, h);
        page.stroke();
    }

    pub fn line(&mut self, from: (f32, f32), to: (f32, f32), color: Rgb, width: f32) {
        self.polyline(&[from, to], color, width, None);
    }

    /// Connected segments through `points` (x, distance from the top); `dash` = (on, off).
    pub fn polyline(&mut self, points: &[(f32, f32)], color: Rgb, width: f32, dash: Option<(f32, f32)>) {
        let Some((first, rest)) = points.split_first() else { return };
        let page = self.page();
        page.save_state();
        page.set_stroke_rgb(color.0, color.1, color.2);
        page.set_line_width(width);
        page.set_line_cap(LineCapStyle::RoundCap);
        if let Some((on, off)) = dash {
            page.set_dash_pattern([on, off], 0.0);
        }
        page.move_to(first.0, PAGE_H - first.1);
        for p in rest {
            page.line_to(p.0, PAGE_H - p.1);
        }
        page.stroke();
        page.restore_state();
    }

    /// Small filled squares centred on `points`.
    pub fn markers(&mut self, points: &[(f32, f32)], color: Rgb, size: f32) {
        let page = self.page();
        page.set_fill_rgb(color.0, color.1, color.2);
        for p in points {
            page.rect(p.0 - size / 2.0, PAGE_H - p.1 - size / 2.0, size, size);
        }
        page.fill_nonzero();
    }

    /// Writes the document; `footer(page, of)` gives the left and right footer texts of each page.
    pub fn finish(mut self, title: &str, footer: impl Fn(usize, usize) -> (String, String)) -> Vec<u8> {
        let total = self.pages.len();
        let pages = std::mem::take(&mut self.pages);
        let mut contents = Vec::with_capacity(total);
        for (i, page) in pages.into_iter().enumerate() {
            self.pages.push(page);
            let (left, right) = footer(i + 1, total);
            let y = PAGE_H - 34.0;
            self.line((MARGIN_X, y - 12.0), (PAGE_W - MARGIN_X, y - 12.0), RULE, 0.5);
            self.text(MARGIN_X, y, &left, Style::new(Font::Regular, 8.0, MUTED, Align::Left));
            self.text(PAGE_W - MARGIN_X, y, &right, Style::new(Font::Regular, 8.0, MUTED, Align::Right));
            contents.push(self.pages.pop().expect("just pushed").finish());
        }

        let mut next = 1;
        let mut alloc = || {
            let r = Ref::new(next);
            next += 1;
            r
        };
        let catalog_id = alloc();
        let tree_id = alloc();
        let info_id = alloc();
        let font_ids = [self.font_refs(&mut alloc), self.font_refs(&mut alloc)];
        let page_ids: Vec<(Ref, Ref)> = (0..total).map(|_| (alloc(), alloc())).collect();

        let mut pdf = Pdf::new();
        pdf.catalog(catalog_id).pages(tree_id);
        pdf.document_info(info_id).title(TextStr(title)).producer(TextStr("Drishtiksha"));
        pdf.pages(tree_id).kids(page_ids.iter().map(|(page, _)| *page)).count(total as i32);
        for ((page_id, content_id), content) in page_ids.iter().zip(contents) {
            let mut page = pdf.page(*page_id);
            page.parent(tree_id).media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H)).contents(*content_id);
            let mut resources = page.resources();
            let mut fonts = resources.fonts();
            fonts.pair(Name(b"F1"), font_ids[0].type0);
            fonts.pair(Name(b"F2"), font_ids[1].type0);
            fonts.finish();
            resources.finish();
            page.finish();
            let compressed = deflate(content.as_slice());
            pdf.stream(*content_id, &compressed).filter(Filter::FlateDecode);
        }
        write_font(&mut pdf, &self.regular, &font_ids[0]);
        write_font(&mut pdf, &self.bold, &font_ids[1]);
        pdf.finish()
    }

    fn font_refs(&self, alloc: &mut impl FnMut() -> Ref) -> FontRefs {
        FontRefs {
            type0: alloc(),
            cid: alloc(),
            descriptor: alloc(),
            file: alloc(),
            cmap: alloc(),
            cid_to_gid: alloc(),
        }
    }
}

struct FontRefs {
    type0: Ref,
    cid: Ref,
    descriptor: Ref,
    file: Ref,
    cmap: Ref,
    cid_to_gid: Ref,
}

fn deflate(data: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec_zlib(data, 6)
}

/// A Type 0 font whose CIDs are the glyph ids of the subset (`subsetter` renumbers glyphs
/// densely in first-use order).
fn write_font(pdf: &mut Pdf, face: &Face, ids: &FontRefs) {
    let system_info = SystemInfo { registry: Str(b"Adobe"), ordering: Str(b"Identity"), supplement: 0 };
    // Subset names carry a six-letter tag by convention; it only has to differ between fonts.
    let mut base_name = b"DRSHTK+".to_vec();
    base_name.extend_from_slice(face.base_name);
    let scale = 1000.0 / face.per_em;

    pdf.type0_font(ids.type0)
        .base_font(Name(&base_name))
        .encoding_predefined(Name(b"Identity-H"))
        .descendant_font(ids.cid)
        .to_unicode(ids.cmap);

    let widths: Vec<f32> = face
        .remapper
        .remapped_gids()
        .map(|old| f32::from(face.face.glyph_hor_advance(ttf_parser::GlyphId(old)).unwrap_or(0)) * scale)
        .collect();
    let subset = subsetter::subset(face.data, 0, &face.remapper);
    let mut cid = pdf.cid_font(ids.cid);
    cid.subtype(CidFontType::Type2)
        .base_font(Name(&base_name))
        .system_info(system_info)
        .font_descriptor(ids.descriptor)
        .default_width(0.0);
    cid.widths().consecutive(0, widths);
    if subset.is_ok() {
        cid.cid_to_gid_map_predefined(Name(b"Identity"));
    } else {
        cid.cid_to_gid_map_stream(ids.cid_to_gid);
    }
    cid.finish();

    let bbox = face.face.global_bounding_box();
    let ascent = f32::from(face.face.ascender()) * scale;
    let descent = f32::from(face.face.descender()) * scale;
    let cap_height = face.face.capital_height().map_or(ascent, |h| f32::from(h) * scale);
    pdf.font_descriptor(ids.descriptor)
        .name(Name(&base_name))
        .flags(FontFlags::NON_SYMBOLIC)
        .bbox(Rect::new(
            f32::from(bbox.x_min) * scale,
            f32::from(bbox.y_min) * scale,
            f32::from(bbox.x_max) * scale,
            f32::from(bbox.y_max) * scale,
        ))
        .italic_angle(0.0)
        .ascent(ascent)
        .descent(descent)
        .cap_height(cap_height)
        .stem_v(if face.base_name.ends_with(b"Bold") { 120.0 } else { 80.0 })
        .font_file2(ids.file);

    match subset {
        Ok(program) => {
            pdf.stream(ids.file, &deflate(&program)).filter(Filter::FlateDecode);
        }
        Err(e) => {
            // Never expected with the shipped fonts; the whole font with a CID → glyph map still
            // renders the same text.
            tracing::warn!(error = ?e, "font subsetting failed; embedding the whole font");
            pdf.stream(ids.file, &deflate(face.data)).filter(Filter::FlateDecode);
            let map: Vec<u8> = face.remapper.remapped_gids().flat_map(u16::to_be_bytes).collect();
            pdf.stream(ids.cid_to_gid, &deflate(&map)).filter(Filter::FlateDecode);
        }
    }

    let mut cmap = UnicodeCmap::new(Name(b"Custom"), system_info);
    for (&gid, &c) in &face.unicode {
        cmap.pair(gid, c);
    }
    let cmap = cmap.finish();
    pdf.cmap(ids.cmap, &deflate(cmap.as_slice())).filter(Filter::FlateDecode);
}
