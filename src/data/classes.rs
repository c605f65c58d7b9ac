//! Classes: how many there are (given, or from the training labels), what they are called
//! (`classes.txt`), and the checks of labels and names that every front end shares.

use std::path::Path;

use super::idx;
use crate::error::{Error, Result};

/// The optional file of class names beside the IDX files: one name a line, in label order.
pub const CLASS_NAMES_FILE: &str = "classes.txt";

/// The longest `classes.txt` read (256 names of a few words each fit many times over); checked
/// before the file is read.
const MAX_CLASS_NAMES_BYTES: u64 = 64 * 1024;

/// The longest class name, in characters: "T-shirt/top" has 11; a name is printed in every
/// line of eval's matrix and drawn under each picture of the misclassified grid, whose cells
/// are as wide as their captions.
pub const MAX_CLASS_NAME_CHARS: usize = 64;

/// The first label at or above `classes`, with its index.
pub(super) fn first_bad_label(labels: &[u8], classes: usize) -> Option<(usize, u8)> {
    labels
        .iter()
        .copied()
        .enumerate()
        .find(|&(_, label)| label as usize >= classes)
}

/// The name of class `k` among `names` (in label order), or the number when there are none.
pub fn class_name(names: Option<&[String]>, k: usize) -> String {
    names
        .and_then(|n| n.get(k))
        .cloned()
        .unwrap_or_else(|| k.to_string())
}

/// A number of classes given rather than taken from the labels, and who gave it (for errors:
/// `--classes 26`, `the checkpoint (10 classes)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassCount {
    pub count: usize,
    pub origin: String,
}

/// Reads a `classes.txt`: one non-empty name a line, in label order (a final newline is
/// optional; surrounding spaces, a Windows `\r` and a UTF-8 byte-order mark are dropped). Each
/// name is checked by [`check_class_names`]. Only a regular file of at most 64 KiB is read.
pub fn read_class_names(path: &Path) -> Result<Vec<String>> {
    let bytes = idx::read_regular(path, MAX_CLASS_NAMES_BYTES).map_err(|e| match e {
        idx::ReadError::Unreadable(what) => {
            Error::data(path, format!("cannot read the class names: {what}"))
        }
        idx::ReadError::TooLarge(size) => Error::data(
            path,
            format!(
                "{size} bytes is too long for a list of class names (at most \
                 {MAX_CLASS_NAMES_BYTES}); it should hold one name a line"
            ),
        ),
    })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::data(path, "is not UTF-8 text; write one class name a line"))?;
    // Editors on Windows start UTF-8 files with a BOM; it is not part of class 0's name.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut lines: Vec<&str> = text.lines().map(str::trim).collect();
    while lines.last() == Some(&"") {
        lines.pop();
    }
    let names: Vec<String> = lines.into_iter().map(str::to_string).collect();
    check_class_names(&names)
        .map_err(|(at, what)| Error::data(path, format!("line {}: {what}", at + 1)))?;
    Ok(names)
}

/// Checks class names from outside (a `classes.txt`, a checkpoint): each non-empty, at most
/// [`MAX_CLASS_NAME_CHARS`] characters, free of control and invisible format characters (which
/// would drive a terminal or hide text, see [`crate::fmt::is_unsafe_char`]), and no two alike.
/// The error is the index of the first bad name and what is wrong with it, with the fix.
pub fn check_class_names(names: &[String]) -> std::result::Result<(), (usize, String)> {
    let mut seen = std::collections::HashMap::new();
    for (at, name) in names.iter().enumerate() {
        if name.is_empty() {
            return Err((
                at,
                "the name is empty; write one class name a line, in label order (line 1 \
                 names label 0)"
                    .into(),
            ));
        }
        let chars = name.chars().count();
        if chars > MAX_CLASS_NAME_CHARS {
            return Err((
                at,
                format!(
                    "the name is {chars} characters long, more than the \
                     {MAX_CLASS_NAME_CHARS} a class name may have; shorten it"
                ),
            ));
        }
        if let Some(c) = name.chars().find(|&c| crate::fmt::is_unsafe_char(c)) {
            return Err((
                at,
                format!(
                    "the name {} holds the control or invisible character U+{:04X}; class \
                     names are printed and drawn, so write them in visible characters",
                    crate::fmt::printable(name),
                    c as u32
                ),
            ));
        }
        if let Some(first) = seen.insert(name.as_str(), at) {
            return Err((
                at,
                format!(
                    "the name {name:?} is also that of line {} (label {first}); each class \
                     needs its own name",
                    first + 1
                ),
            ));
        }
    }
    Ok(())
}

/// The number of classes the labels make, and what is wrong with them, in one rule that every
/// front end (the CLI's train and eval, and those to come) shares:
///
/// * the count is `given` (`--classes N`, a checkpoint's) or else the largest training label + 1;
/// * every training and test label must be below it (the error names the file and the label);
/// * a class without a single training example is an error when the count was inferred (a
///   stray label 200 among 0..=9 would silently train a 201-way net), naming the file, the
///   labels seen, the empty classes and both fixes; with a given count it is a warning,
///   returned in [`ClassCheck::warning`] for the caller to show.
pub fn check_class_labels(
    train_labels: &[u8],
    train_file: &Path,
    test_labels: &[u8],
    test_file: &Path,
    given: Option<&ClassCount>,
) -> Result<ClassCheck> {
    let (classes, why) = class_count(train_labels, given);
    if classes < 2 {
        return Err(Error::data(
            train_file,
            "every label is 0, but a classifier needs at least 2 classes; check the labels or \
             pass --classes N",
        ));
    }
    check_labels_below(classes, &why, train_labels, train_file)?;
    check_labels_below(classes, &why, test_labels, test_file)?;
    let seen = labels_seen(train_labels);
    let missing: Vec<usize> = (0..classes).filter(|&k| !seen[k]).collect();
    if missing.is_empty() {
        return Ok(ClassCheck {
            classes,
            warning: None,
        });
    }
    let empty = EmptyClasses {
        classes,
        empty: &missing,
        seen: ranges((0..256).filter(|&k| seen[k])),
        train_file,
    };
    match given {
        None => Err(empty.error()),
        Some(c) => Ok(ClassCheck {
            classes,
            warning: Some(empty.warning(c)),
        }),
    }
}

/// The class count (given, or the largest training label + 1) and why it is that, for the
/// out-of-range error.
fn class_count(train_labels: &[u8], given: Option<&ClassCount>) -> (usize, String) {
    match given {
        Some(c) => (
            c.count,
            format!(
                "{} allows labels 0..={}",
                c.origin,
                c.count.saturating_sub(1)
            ),
        ),
        None => {
            let largest = train_labels.iter().copied().max().unwrap_or(0) as usize;
            (
                largest + 1,
                format!(
                    "the largest training label is {largest}, so there are {} classes \
                     (0..={largest})",
                    largest + 1
                ),
            )
        }
    }
}

/// Every label of `file` below `classes`; the error names the first that is not, and `why`
/// the count is what it is.
fn check_labels_below(classes: usize, why: &str, labels: &[u8], file: &Path) -> Result<()> {
    match first_bad_label(labels, classes) {
        Some((index, label)) => Err(Error::data(
            file,
            format!(
                "label {label} at index {index} is out of range: {why}; pass --classes N \
                 (more than {label}) or fix the labels"
            ),
        )),
        None => Ok(()),
    }
}

/// Which of the 256 byte values occur among `labels`.
fn labels_seen(labels: &[u8]) -> [bool; 256] {
    let mut seen = [false; 256];
    for &label in labels {
        seen[label as usize] = true;
    }
    seen
}

/// Classes without a training example: an error under an inferred count, a warning under a
/// given one, both worded here so that they name the same things.
struct EmptyClasses<'a> {
    classes: usize,
    /// The classes no training label names, ascending (never empty).
    empty: &'a [usize],
    /// The training labels present, as [`ranges`].
    seen: String,
    train_file: &'a Path,
}

impl EmptyClasses<'_> {
    /// "class" or "classes", and "has" or "have", agreeing with the number of empty classes.
    fn words(&self) -> (&'static str, &'static str) {
        match self.empty.len() {
            1 => ("class", "has"),
            _ => ("classes", "have"),
        }
    }

    /// The error of an inferred count: a stray label is likelier than a deliberate gap.
    fn error(&self) -> Error {
        let (plural, has) = self.words();
        Error::data(
            self.train_file,
            format!(
                "the training labels are {}, so {} classes would be inferred, but {plural} {} \
                 {has} no training example (a stray or corrupt label?); correct the labels, or \
                 pass --classes {} to mean it",
                self.seen,
                self.classes,
                ranges(self.empty.iter().copied()),
                self.classes,
            ),
        )
    }

    /// The warning of a count `given` on purpose: those classes cannot be learnt.
    fn warning(&self, given: &ClassCount) -> String {
        let (plural, has) = self.words();
        format!(
            "{}: {plural} {} of the {} ({}) {has} no training example (labels seen: {}); the \
             net cannot learn {}",
            self.train_file.display(),
            ranges(self.empty.iter().copied()),
            self.classes,
            given.origin,
            self.seen,
            if self.empty.len() == 1 { "it" } else { "them" },
        )
    }
}

/// The class count [`check_class_labels`] settled on, and a warning to show (classes without
/// a training example under a given count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassCheck {
    pub classes: usize,
    pub warning: Option<String>,
}

/// Ascending numbers in a short range form: `0-9, 200`.
fn ranges(numbers: impl Iterator<Item = usize>) -> String {
    let mut parts: Vec<(usize, usize)> = Vec::new();
    for n in numbers {
        match parts.last_mut() {
            Some((_, end)) if *end + 1 == n => *end = n,
            _ => parts.push((n, n)),
        }
    }
    parts
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{load, load_with, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS};
    use std::path::PathBuf;

    /// A directory of four raw IDX files: `train` and `test` labels, 1x2 images.
    fn idx_dir(name: &str, train: &[u8], test: &[u8]) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("gpu-train-classes-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (images, labels, set) in [
            (TRAIN_IMAGES, TRAIN_LABELS, train),
            (TEST_IMAGES, TEST_LABELS, test),
        ] {
            let n = set.len() as u32;
            let mut img = [idx::IMAGES_MAGIC, n, 1, 2]
                .iter()
                .flat_map(|w| w.to_be_bytes())
                .collect::<Vec<u8>>();
            img.extend(std::iter::repeat_n(7u8, set.len() * 2));
            std::fs::write(dir.join(images), img).unwrap();
            let mut lab = [idx::LABELS_MAGIC, n]
                .iter()
                .flat_map(|w| w.to_be_bytes())
                .collect::<Vec<u8>>();
            lab.extend_from_slice(set);
            std::fs::write(dir.join(labels), lab).unwrap();
        }
        dir
    }

    #[test]
    fn classes_come_from_the_largest_training_label_or_are_given() {
        let every: Vec<u8> = (0..26).rev().collect();
        let dir = idx_dir("count", &every, &[1, 2]);
        let set = load(Some(&dir)).unwrap();
        assert_eq!((set.train.classes(), set.test.classes()), (26, 26));
        assert_eq!(set.describe_classes(), "26 (labels 0..=25)");
        assert_eq!(set.class_warning, None);
        let given = |count: usize| {
            load_with(
                Some(&dir),
                Some(ClassCount {
                    count,
                    origin: format!("--classes {count}"),
                }),
            )
        };
        let thirty = given(30).unwrap();
        assert_eq!(thirty.train.classes(), 30);
        assert!(
            thirty
                .class_warning
                .as_deref()
                .is_some_and(|w| w.contains("classes 26-29 of the 30 (--classes 30)")),
            "{:?}",
            thirty.class_warning
        );
        let message = given(20).unwrap_err().to_string();
        assert!(
            message.contains(&dir.join(TRAIN_LABELS).display().to_string())
                && message.contains("label 25 at index 0")
                && message.contains("--classes 20 allows labels 0..=19"),
            "{message}"
        );
        assert!(given(1).unwrap_err().to_string().contains("--classes 1"));
        assert!(given(257).unwrap_err().to_string().contains("2 to 256"));
        // A test label beyond the training labels' range names the test file.
        let dir = idx_dir("beyond", &[0, 1, 2, 3, 4], &[1, 5]);
        let message = load(Some(&dir)).unwrap_err().to_string();
        assert!(
            message.contains(&dir.join(TEST_LABELS).display().to_string())
                && message.contains("label 5 at index 1")
                && message.contains("largest training label is 4"),
            "{message}"
        );
        // An inferred count with classes no training image has is an error naming them.
        let dir = idx_dir("gaps", &[0, 25, 3, 1], &[1, 2]);
        let message = load(Some(&dir)).unwrap_err().to_string();
        assert!(
            message.contains(&dir.join(TRAIN_LABELS).display().to_string())
                && message.contains("the training labels are 0-1, 3, 25")
                && message.contains("classes 2, 4-24 have no training example")
                && message.contains("--classes 26 to mean it"),
            "{message}"
        );
        assert_eq!(ranges([7].into_iter()), "7");
        assert_eq!(ranges([0, 1, 2, 9, 10, 200].into_iter()), "0-2, 9-10, 200");
        let dir = idx_dir("zeros", &[0, 0], &[0]);
        assert!(load(Some(&dir))
            .unwrap_err()
            .to_string()
            .contains("at least 2 classes"));
    }

    #[test]
    fn class_names_come_from_classes_txt_and_must_match_the_count() {
        let dir = idx_dir("names", &[0, 2, 1], &[1]);
        std::fs::write(dir.join(CLASS_NAMES_FILE), "cat\r\n dog \nbird\n\n").unwrap();
        let set = load(Some(&dir)).unwrap();
        assert_eq!(set.class_names.as_deref().unwrap(), ["cat", "dog", "bird"]);
        assert_eq!(set.class_name(1), "dog");
        assert_eq!(set.describe_classes(), "3 (cat, dog, bird)");
        let names = dir.join(CLASS_NAMES_FILE);
        std::fs::write(&names, "cat\ndog\n").unwrap();
        let message = load(Some(&dir)).unwrap_err().to_string();
        assert!(
            message.contains(&names.display().to_string())
                && message.contains("holds 2 class names but the data has 3 classes"),
            "{message}"
        );
        std::fs::write(&names, "cat\n\ndog\nbird\n").unwrap();
        let message = load(Some(&dir)).unwrap_err().to_string();
        assert!(message.contains("line 2: the name is empty"), "{message}");
        std::fs::write(&names, [0xff, 0xfe, b'\n']).unwrap();
        assert!(load(Some(&dir)).unwrap_err().to_string().contains("UTF-8"));
        assert_eq!(class_name(None, 7), "7");
    }
}
