//! The synthetic population of the sample federation: deterministic (a fixed seed, no clock, the
//! same bytes on every machine), internally consistent (spouses, parents and children agree
//! across the identity register and the family book), and of no real person: names are drawn
//! from lists of common given and family names.
//!
//! `tests/synthetic_records.rs` checks that `deploy/local/records/` is exactly what
//! [`generate`] makes; `ISNAD_BLESS=1 cargo test -p isnad-provider --test synthetic_records`
//! rewrites it.

use std::collections::HashSet;

use serde::Serialize;

/// File names under `deploy/local/records/`.
pub const IDENTITY_FILE: &str = "identity.person.jsonl";
/// The family book's records.
pub const CIVIL_FILE: &str = "civil.family.jsonl";
/// The labour ministry's records.
pub const LABOUR_FILE: &str = "labour.employment.jsonl";
/// How many people the committed sample holds.
pub const SAMPLE_PEOPLE: usize = 1200;

/// The three record files, as JSON Lines text, one line per person in the same order.
#[derive(Debug)]
pub struct Population {
    /// `identity.person`.
    pub identity: String,
    /// `civil.family`.
    pub civil: String,
    /// `labour.employment`.
    pub labour: String,
}

/// Ages are computed against this date, never the clock, so the output never changes.
const REFERENCE: (i32, u32, u32) = (2026, 1, 1);

const MALE: &[(&str, &str)] = &[
    ("Mohammed", "محمد"),
    ("Ahmed", "أحمد"),
    ("Khalid", "خالد"),
    ("Saeed", "سعيد"),
    ("Rashid", "راشد"),
    ("Hamad", "حمد"),
    ("Sultan", "سلطان"),
    ("Abdullah", "عبدالله"),
    ("Omar", "عمر"),
    ("Ali", "علي"),
    ("Hamdan", "حمدان"),
    ("Majid", "ماجد"),
    ("Faisal", "فيصل"),
    ("Yousef", "يوسف"),
    ("Ibrahim", "إبراهيم"),
    ("Saif", "سيف"),
    ("Mansour", "منصور"),
    ("Obaid", "عبيد"),
    ("Juma", "جمعة"),
    ("Hassan", "حسن"),
    ("Hussain", "حسين"),
    ("Tariq", "طارق"),
    ("Nasser", "ناصر"),
    ("Zayed", "زايد"),
    ("Mubarak", "مبارك"),
    ("Salem", "سالم"),
    ("Humaid", "حميد"),
    ("Khalifa", "خليفة"),
    ("Marwan", "مروان"),
    ("Adel", "عادل"),
    ("Waleed", "وليد"),
    ("Bilal", "بلال"),
];

const FEMALE: &[(&str, &str)] = &[
    ("Fatima", "فاطمة"),
    ("Mariam", "مريم"),
    ("Aisha", "عائشة"),
    ("Hessa", "حصة"),
    ("Noura", "نورة"),
    ("Shamma", "شمة"),
    ("Latifa", "لطيفة"),
    ("Moza", "موزة"),
    ("Amna", "آمنة"),
    ("Maitha", "ميثاء"),
    ("Salama", "سلامة"),
    ("Alyazia", "اليازية"),
    ("Reem", "ريم"),
    ("Sara", "سارة"),
    ("Huda", "هدى"),
    ("Khadija", "خديجة"),
    ("Layla", "ليلى"),
    ("Noor", "نور"),
    ("Asma", "أسماء"),
    ("Hind", "هند"),
    ("Shaikha", "شيخة"),
    ("Meera", "ميرة"),
    ("Dana", "دانة"),
    ("Ghaya", "غاية"),
    ("Rawdha", "روضة"),
    ("Wadima", "وديمة"),
    ("Zainab", "زينب"),
    ("Mahra", "مهرة"),
    ("Afra", "عفراء"),
    ("Jawaher", "جواهر"),
    ("Lubna", "لبنى"),
    ("Nadia", "نادية"),
];

const FAMILY: &[(&str, &str)] = &[
    ("Al Mansoori", "المنصوري"),
    ("Al Marzooqi", "المرزوقي"),
    ("Al Shamsi", "الشامسي"),
    ("Al Suwaidi", "السويدي"),
    ("Al Mazrouei", "المزروعي"),
    ("Al Ketbi", "الكتبي"),
    ("Al Dhaheri", "الظاهري"),
    ("Al Nuaimi", "النعيمي"),
    ("Al Falasi", "الفلاسي"),
    ("Al Hammadi", "الحمادي"),
    ("Al Muhairi", "المهيري"),
    ("Al Ameri", "العامري"),
    ("Al Kaabi", "الكعبي"),
    ("Al Qubaisi", "القبيسي"),
    ("Al Rumaithi", "الرميثي"),
    ("Al Blooshi", "البلوشي"),
    ("Al Hosani", "الحوسني"),
    ("Al Zaabi", "الزعابي"),
    ("Al Mheiri", "المهيري"),
    ("Al Shehhi", "الشحي"),
    ("Al Tunaiji", "الطنيجي"),
    ("Al Naqbi", "النقبي"),
    ("Al Habtoor", "الحبتور"),
    ("Al Ghurair", "الغرير"),
    ("Al Owais", "العويس"),
    ("Al Hashemi", "الهاشمي"),
    ("Al Qassimi", "القاسمي"),
];

const EMIRATES: &[&str] = &[
    "abu-dhabi",
    "dubai",
    "sharjah",
    "ajman",
    "umm-al-quwain",
    "ras-al-khaimah",
    "fujairah",
];

/// Nationalities with weights: most of the sample are citizens.
const NATIONALITIES: &[(&str, u64)] = &[
    ("ARE", 70),
    ("IND", 8),
    ("PAK", 5),
    ("EGY", 5),
    ("PHL", 4),
    ("JOR", 4),
    ("GBR", 4),
];

const EMPLOYERS: &[&str] = &[
    "Gulf Horizon Trading LLC",
    "Desert Falcon Engineering LLC",
    "Pearl Coast Logistics LLC",
    "Oasis Health Services LLC",
    "Emirates Crescent Contracting LLC",
    "Blue Dhow Hospitality LLC",
    "Sandstone Real Estate LLC",
    "Al Reem Facilities Management LLC",
    "Palm Grove Education LLC",
    "Seven Sands Retail LLC",
    "Marina Bay Technologies LLC",
    "Golden Dune Insurance Brokers LLC",
    "Creekside Financial Services LLC",
    "Northern Peaks Manufacturing LLC",
    "Saffron Foods Trading LLC",
    "Lighthouse Media Production LLC",
    "Coral Reef Marine Services LLC",
    "Bright Minaret Consulting LLC",
    "Summit Gate Security Services LLC",
    "Date Palm Agriculture LLC",
    "Harbour Light Shipping LLC",
    "Silver Camel Transport LLC",
];

/// Occupations with a monthly salary range in AED.
const OCCUPATIONS: &[(&str, i64, i64)] = &[
    ("Civil Engineer", 18_000, 45_000),
    ("Nurse", 9_000, 22_000),
    ("Accountant", 10_000, 28_000),
    ("Teacher", 12_000, 26_000),
    ("Software Developer", 15_000, 50_000),
    ("Sales Executive", 6_000, 20_000),
    ("Pharmacist", 14_000, 30_000),
    ("Electrician", 4_000, 9_000),
    ("Administrative Officer", 8_000, 18_000),
    ("Driver", 3_000, 6_000),
    ("Architect", 20_000, 55_000),
    ("Physician", 30_000, 80_000),
    ("Marketing Manager", 22_000, 60_000),
    ("Chef", 5_000, 15_000),
    ("Customer Service Agent", 4_000, 10_000),
    ("Human Resources Officer", 11_000, 26_000),
    ("Mechanical Technician", 5_000, 12_000),
    ("Legal Advisor", 20_000, 55_000),
    ("Logistics Coordinator", 7_000, 16_000),
    ("Financial Analyst", 16_000, 40_000),
    ("Security Supervisor", 6_000, 14_000),
    ("Lab Technician", 7_000, 15_000),
];

/// SplitMix64: a small, well-distributed PRNG; enough for synthetic data, not for secrets.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `low..=high`.
    fn range(&mut self, low: i64, high: i64) -> i64 {
        let span = (high - low + 1) as u64;
        low + (self.next() % span) as i64
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }

    fn weighted(&mut self, items: &[(&'static str, u64)]) -> &'static str {
        let total: u64 = items.iter().map(|(_, w)| w).sum();
        let mut roll = self.next() % total;
        for (item, weight) in items {
            if roll < *weight {
                return item;
            }
            roll -= weight;
        }
        items[0].0
    }
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(if m <= 2 { y - 1 } else { y });
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = (yoe + era * 400 + i64::from(m <= 2)) as i32;
    (y, m, d)
}

fn date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

fn reference_days() -> i64 {
    days_from_civil(REFERENCE.0, REFERENCE.1, REFERENCE.2)
}

/// A birth date (as days) for someone `age` years old on the reference date.
fn born_aged(rng: &mut Rng, age: i64) -> i64 {
    let (y, m, d) = REFERENCE;
    let birthday = days_from_civil(y - age as i32, m, d);
    birthday - rng.range(1, 364)
}

fn age_on_reference(born: i64) -> i64 {
    let (by, bm, bd) = civil_from_days(born);
    let (ry, rm, rd) = REFERENCE;
    i64::from(ry - by) - i64::from((rm, rd) < (bm, bd))
}

/// Luhn check digit over the digits of `body`.
fn luhn_digit(body: &str) -> u32 {
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let digit = u32::from(b - b'0');
            if i % 2 == 0 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

/// Whether a 15-digit ID number's last digit is its Luhn check digit.
pub fn luhn_valid(id: &str) -> bool {
    id.len() == 15
        && id.bytes().all(|b| b.is_ascii_digit())
        && luhn_digit(&id[..14]) == u32::from(id.as_bytes()[14] - b'0')
}

#[derive(Debug, Clone)]
struct Person {
    subject: String,
    male: bool,
    given: usize,
    father_given: usize,
    family: usize,
    born: i64,
    nationality: &'static str,
    emirate: &'static str,
    marital_status: &'static str,
    spouse: Option<usize>,
    family_book: Option<String>,
    children: Vec<usize>,
    mother: Option<usize>,
    father: Option<usize>,
    force_employed: bool,
}

#[derive(Serialize)]
struct IdentityRecord<'a> {
    subject: &'a str,
    full_name_en: String,
    full_name_ar: String,
    date_of_birth: String,
    sex: &'static str,
    nationality: &'static str,
    emirate: &'static str,
    id_card_expiry: String,
    mobile: String,
    email: String,
}

#[derive(Serialize)]
struct CivilRecord<'a> {
    subject: &'a str,
    marital_status: &'static str,
    spouse_subject: Option<&'a str>,
    family_book_number: Option<&'a str>,
    children: Vec<&'a str>,
    children_count: usize,
    mother_subject: Option<&'a str>,
    father_subject: Option<&'a str>,
}

#[derive(Serialize)]
struct LabourRecord<'a> {
    subject: &'a str,
    employed: bool,
    employer_name: Option<&'static str>,
    occupation: Option<&'static str>,
    monthly_salary_aed: Option<i64>,
    employment_start: Option<String>,
    contract_type: Option<&'static str>,
}

struct Builder {
    rng: Rng,
    people: Vec<Person>,
    subjects: HashSet<String>,
}

impl Builder {
    fn subject(&mut self, born: i64) -> String {
        let year = civil_from_days(born).0;
        loop {
            let body = format!("784{year:04}{:07}", self.rng.next() % 10_000_000);
            let id = format!("{body}{}", luhn_digit(&body));
            if self.subjects.insert(id.clone()) {
                return id;
            }
        }
    }

    fn family_book(&mut self) -> String {
        format!("FB-{:08}", self.rng.next() % 100_000_000)
    }

    #[allow(clippy::too_many_arguments)]
    fn person(
        &mut self,
        male: bool,
        born: i64,
        family: usize,
        father_given: usize,
        nationality: &'static str,
        emirate: &'static str,
        marital_status: &'static str,
    ) -> usize {
        let names = if male { MALE.len() } else { FEMALE.len() };
        let given = (self.rng.next() % names as u64) as usize;
        let subject = self.subject(born);
        self.people.push(Person {
            subject,
            male,
            given,
            father_given,
            family,
            born,
            nationality,
            emirate,
            marital_status,
            spouse: None,
            family_book: None,
            children: Vec::new(),
            mother: None,
            father: None,
            force_employed: false,
        });
        self.people.len() - 1
    }

    fn random_father_given(&mut self) -> usize {
        (self.rng.next() % MALE.len() as u64) as usize
    }

    fn random_family(&mut self) -> usize {
        (self.rng.next() % FAMILY.len() as u64) as usize
    }

    /// A married couple and their children. `newborn` adds a child born in the second half of
    /// 2025; `citizen_in` forces a citizen household in that emirate.
    fn household(&mut self, newborn: bool, citizen_in: Option<&'static str>, limit: usize) {
        let nationality = match citizen_in {
            Some(_) => "ARE",
            None => self.rng.weighted(NATIONALITIES),
        };
        let emirate = citizen_in.unwrap_or_else(|| *self.rng.pick(EMIRATES));
        let wife_age = if newborn {
            self.rng.range(22, 42)
        } else {
            self.rng.range(22, 65)
        };
        let husband_age = (wife_age + self.rng.range(0, 8)).min(80);
        let family = self.random_family();
        let father_given = self.random_father_given();
        let husband_born = born_aged(&mut self.rng, husband_age);
        let husband = self.person(
            true,
            husband_born,
            family,
            father_given,
            nationality,
            emirate,
            "married",
        );
        let wife_family = self.random_family();
        let wife_father = self.random_father_given();
        let wife_born = born_aged(&mut self.rng, wife_age);
        let wife = self.person(
            false,
            wife_born,
            wife_family,
            wife_father,
            nationality,
            emirate,
            "married",
        );
        self.people[husband].spouse = Some(wife);
        self.people[wife].spouse = Some(husband);
        let book = (nationality == "ARE").then(|| self.family_book());
        self.people[husband].family_book = book.clone();
        self.people[wife].family_book = book.clone();

        let oldest_child_age = (wife_age.min(husband_age) - 18).min(30);
        let mut count = self.rng.range(0, 5) as usize;
        if citizen_in.is_some() {
            count = count.max(2);
        }
        let mut births = Vec::new();
        if newborn {
            let second_half = days_from_civil(2025, 7, 1);
            births.push(second_half + self.rng.range(0, 183));
        }
        for _ in 0..count {
            if oldest_child_age < 1 {
                break;
            }
            let age = self.rng.range(1, oldest_child_age);
            births.push(born_aged(&mut self.rng, age));
        }
        let husband_given = self.people[husband].given;
        for born in births {
            if self.people.len() >= limit {
                break;
            }
            let male = self.rng.chance(50);
            let child = self.person(
                male,
                born,
                family,
                husband_given,
                nationality,
                emirate,
                "single",
            );
            self.people[child].family_book = book.clone();
            self.people[child].mother = Some(wife);
            self.people[child].father = Some(husband);
            self.people[husband].children.push(child);
            self.people[wife].children.push(child);
        }
    }

    /// An unmarried adult.
    fn single(&mut self) {
        let nationality = self.rng.weighted(NATIONALITIES);
        let emirate = *self.rng.pick(EMIRATES);
        let age = self.rng.range(18, 85);
        let status = match self.rng.next() % 10 {
            0 => "divorced",
            1 if age > 45 => "widowed",
            _ => "single",
        };
        let male = self.rng.chance(50);
        let family = self.random_family();
        let father = self.random_father_given();
        let born = born_aged(&mut self.rng, age);
        let person = self.person(male, born, family, father, nationality, emirate, status);
        if nationality == "ARE" {
            let book = self.family_book();
            self.people[person].family_book = Some(book);
        }
    }
}

/// Generates the records of `people` people (the committed sample uses [`SAMPLE_PEOPLE`]).
pub fn generate(people: usize) -> Population {
    let mut builder = Builder {
        rng: Rng(0x15AD_2026_0001),
        people: Vec::with_capacity(people + 8),
        subjects: HashSet::new(),
    };
    // The first person is the demo's housing grant applicant: a married citizen of Dubai with
    // children, employed.
    builder.household(false, Some("dubai"), people);
    builder.people[0].force_employed = true;
    let mut newborns = 0;
    while builder.people.len() + 2 <= people {
        let roll = builder.rng.next() % 100;
        if newborns < 30 {
            builder.household(true, None, people);
            newborns += 1;
        } else if roll < 45 {
            builder.household(false, None, people);
        } else {
            builder.single();
        }
    }
    while builder.people.len() < people {
        builder.single();
    }
    render(&mut builder)
}

fn render(builder: &mut Builder) -> Population {
    let mut out = Population {
        identity: String::new(),
        civil: String::new(),
        labour: String::new(),
    };
    let reference = reference_days();
    let people = builder.people.clone();
    let rng = &mut builder.rng;
    for person in &people {
        let given = if person.male {
            MALE[person.given]
        } else {
            FEMALE[person.given]
        };
        let father = MALE[person.father_given];
        let family = FAMILY[person.family];
        let email_family: String = family
            .0
            .to_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphabetic())
            .collect();
        let identity = IdentityRecord {
            subject: &person.subject,
            full_name_en: format!("{} {} {}", given.0, father.0, family.0),
            full_name_ar: format!("{} {} {}", given.1, father.1, family.1),
            date_of_birth: date(person.born),
            sex: if person.male { "M" } else { "F" },
            nationality: person.nationality,
            emirate: person.emirate,
            id_card_expiry: date(reference + rng.range(0, 6 * 365 - 1)),
            mobile: format!("+9715{:08}", rng.next() % 100_000_000),
            email: format!(
                "{}.{}.{:04}@example.ae",
                given.0.to_lowercase(),
                email_family,
                rng.next() % 10_000
            ),
        };
        let subject_of = |index: Option<usize>| index.map(|i| people[i].subject.as_str());
        let civil = CivilRecord {
            subject: &person.subject,
            marital_status: person.marital_status,
            spouse_subject: subject_of(person.spouse),
            family_book_number: person.family_book.as_deref(),
            children: person
                .children
                .iter()
                .map(|&c| people[c].subject.as_str())
                .collect(),
            children_count: person.children.len(),
            mother_subject: subject_of(person.mother),
            father_subject: subject_of(person.father),
        };
        let age = age_on_reference(person.born);
        let employed = person.force_employed
            || match age {
                18..=65 => rng.chance(65),
                66.. => rng.chance(8),
                _ => false,
            };
        let labour = if employed {
            let (occupation, low, high) = *rng.pick(OCCUPATIONS);
            let adult = days_from_civil(civil_from_days(person.born).0 + 18, 1, 1);
            LabourRecord {
                subject: &person.subject,
                employed: true,
                employer_name: Some(*rng.pick(EMPLOYERS)),
                occupation: Some(occupation),
                monthly_salary_aed: Some(rng.range(low, high) / 100 * 100),
                employment_start: Some(date(rng.range(adult, reference - 1))),
                contract_type: Some(*rng.pick(&["unlimited", "unlimited", "limited", "part-time"])),
            }
        } else {
            LabourRecord {
                subject: &person.subject,
                employed: false,
                employer_name: None,
                occupation: None,
                monthly_salary_aed: None,
                employment_start: None,
                contract_type: None,
            }
        };
        for (text, line) in [
            (&mut out.identity, serde_json::to_string(&identity)),
            (&mut out.civil, serde_json::to_string(&civil)),
            (&mut out.labour, serde_json::to_string(&labour)),
        ] {
            text.push_str(&line.expect("plain structs always serialize"));
            text.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip() {
        for days in [-1000, 0, 11_016, 20_454, 20_819] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(days_from_civil(2026, 1, 1), 20_454);
    }

    #[test]
    fn luhn_matches_a_known_number() {
        // 7992739871 has check digit 3 in the textbook Luhn example.
        assert_eq!(luhn_digit("7992739871"), 3);
    }
}
