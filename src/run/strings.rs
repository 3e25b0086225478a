//! The words a volunteer reads: the consent text and the end-of-run summary,
//! in Khmer and English.

use crate::model::VerdictStatus;

/// The language of the consent text and the summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Khmer.
    Km,
    /// English.
    En,
}

impl Lang {
    /// `km` or `en` (case-insensitive; `km_KH.UTF-8` style locales too).
    pub fn parse(s: &str) -> Option<Lang> {
        let s = s.to_ascii_lowercase();
        if s.starts_with("km") {
            Some(Lang::Km)
        } else if s.starts_with("en") || s == "c" || s == "posix" || s.starts_with("c.") {
            Some(Lang::En)
        } else {
            None
        }
    }

    /// From `LC_ALL`, `LC_MESSAGES` or `LANG` (the first one set); Khmer for
    /// a `km` locale, English otherwise.
    pub fn from_env() -> Lang {
        ["LC_ALL", "LC_MESSAGES", "LANG"]
            .iter()
            .filter_map(|k| std::env::var(k).ok())
            .find(|v| !v.is_empty())
            .and_then(|v| Lang::parse(&v))
            .unwrap_or(Lang::En)
    }
}

/// The informed-consent text shown before the first interactive run.
pub fn consent_text(lang: Lang) -> &'static str {
    match lang {
        Lang::En => CONSENT_EN,
        Lang::Km => CONSENT_KM,
    }
}

/// The question after the consent text.
pub fn consent_prompt(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "Type \"yes\" to accept and continue (you will not be asked again): ",
        Lang::Km => "វាយ \"yes\" ឬ \"យល់ព្រម\" ដើម្បីយល់ព្រម ហើយបន្ត (គេនឹងមិនសួរអ្នកម្តងទៀតទេ)៖ ",
    }
}

/// True when the answer to [`consent_prompt`] accepts.
pub fn is_acceptance(answer: &str) -> bool {
    let a = answer.trim().to_lowercase();
    matches!(
        a.as_str(),
        "yes" | "y" | "យល់ព្រម" | "បាទ" | "ចាស" | "ចា" | "បាទ យល់ព្រម" | "ចាស យល់ព្រម"
    )
}

/// The message when the volunteer declines.
pub fn consent_declined(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "Nothing was measured.",
        Lang::Km => "មិនបានវាស់អ្វីទាំងអស់។",
    }
}

/// The error when consent is needed but nobody can be asked.
pub fn consent_needed_unattended(lang: Lang) -> &'static str {
    match lang {
        Lang::En => {
            "consent has not been given: read the risks with an interactive `gatewatch run`, \
             or pass --yes (or set `consent = true` in the config file) for unattended runs"
        }
        Lang::Km => {
            "មិនទាន់មានការយល់ព្រមទេ៖ សូមអានហានិភ័យដោយដំណើរការ `gatewatch run` នៅលើ terminal \
             ឬប្រើ --yes (ឬ `consent = true` ក្នុងឯកសារ config) សម្រាប់ការដំណើរការដោយស្វ័យប្រវត្តិ"
        }
    }
}

/// The name of a verdict status in the summary.
pub fn status_name(lang: Lang, s: Option<VerdictStatus>) -> &'static str {
    match (lang, s) {
        (Lang::En, Some(VerdictStatus::Accessible)) => "accessible",
        (Lang::En, Some(VerdictStatus::Blocked)) => "blocked",
        (Lang::En, Some(VerdictStatus::Throttled)) => "throttled",
        (Lang::En, Some(VerdictStatus::Down)) => "down everywhere",
        (Lang::En, Some(VerdictStatus::Inconclusive)) => "inconclusive",
        (Lang::En, None) => "not classified",
        (Lang::Km, Some(VerdictStatus::Accessible)) => "ចូលបាន",
        (Lang::Km, Some(VerdictStatus::Blocked)) => "ត្រូវបានបិទ",
        (Lang::Km, Some(VerdictStatus::Throttled)) => "ត្រូវបានបន្ថយល្បឿន",
        (Lang::Km, Some(VerdictStatus::Down)) => "គេហទំព័រខូចគ្រប់ទីកន្លែង",
        (Lang::Km, Some(VerdictStatus::Inconclusive)) => "មិនអាចសន្និដ្ឋានបាន",
        (Lang::Km, None) => "មិនទាន់បានចាត់ថ្នាក់",
    }
}

/// Fixed phrases of the summary.
#[derive(Clone, Copy, Debug)]
pub enum Phrase {
    /// The heading.
    Heading,
    /// "URLs measured".
    Measured,
    /// "interrupted".
    Interrupted,
    /// "Anomalies".
    Anomalies,
    /// "No anomalies".
    NoAnomalies,
    /// "Results written to".
    ResultsIn,
    /// "The run was interrupted; continue with --resume".
    ResumeHint,
    /// "Time taken".
    Elapsed,
    /// "Network steps repeated after a silence" (the line's loss estimate).
    Retried,
    /// The warning for a lossy line.
    LossyLine,
}

/// A fixed phrase of the summary.
pub fn phrase(lang: Lang, p: Phrase) -> &'static str {
    match (lang, p) {
        (Lang::En, Phrase::Heading) => "gatewatch run summary",
        (Lang::En, Phrase::Measured) => "URLs measured",
        (Lang::En, Phrase::Interrupted) => "interrupted",
        (Lang::En, Phrase::Anomalies) => "Anomalies",
        (Lang::En, Phrase::NoAnomalies) => "No anomalies found.",
        (Lang::En, Phrase::ResultsIn) => "Results written to",
        (Lang::En, Phrase::ResumeHint) => {
            "The run was interrupted; run again with --resume to measure the rest."
        }
        (Lang::En, Phrase::Elapsed) => "Time taken",
        (Lang::En, Phrase::Retried) => "Network steps repeated after a silence",
        (Lang::En, Phrase::LossyLine) => {
            "This connection lost many packets during the run: the results are less certain. \
             Lost packets were repeated and are not counted as blocking, but measure again \
             on a steadier connection if you can."
        }
        (Lang::Km, Phrase::Heading) => "សេចក្តីសង្ខេបនៃការវាស់ gatewatch",
        (Lang::Km, Phrase::Measured) => "ចំនួន URL ដែលបានវាស់",
        (Lang::Km, Phrase::Interrupted) => "បានបញ្ឈប់មុនចប់",
        (Lang::Km, Phrase::Anomalies) => "ភាពមិនប្រក្រតី",
        (Lang::Km, Phrase::NoAnomalies) => "មិនឃើញភាពមិនប្រក្រតីទេ។",
        (Lang::Km, Phrase::ResultsIn) => "លទ្ធផលត្រូវបានរក្សាទុកនៅ",
        (Lang::Km, Phrase::ResumeHint) => {
            "ការវាស់ត្រូវបានបញ្ឈប់មុនចប់។ ដំណើរការម្តងទៀតជាមួយ --resume ដើម្បីវាស់ URL ដែលនៅសល់។"
        }
        (Lang::Km, Phrase::Elapsed) => "រយៈពេល",
        (Lang::Km, Phrase::Retried) => "ជំហានបណ្តាញដែលត្រូវធ្វើម្តងទៀតដោយគ្មានចម្លើយ",
        (Lang::Km, Phrase::LossyLine) => {
            "ការតភ្ជាប់នេះបានបាត់បង់កញ្ចប់ទិន្នន័យច្រើនក្នុងពេលវាស់៖ លទ្ធផលមិនសូវប្រាកដទេ។ \
             កញ្ចប់ដែលបាត់ត្រូវបានផ្ញើម្តងទៀត ហើយមិនត្រូវបានរាប់ថាជាការបិទទេ \
             ប៉ុន្តែសូមវាស់ម្តងទៀតនៅលើការតភ្ជាប់ដែលមានស្ថិរភាពជាងនេះ ប្រសិនបើអាច។"
        }
    }
}

/// Words about the network and the control (preflight and summary).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetWords {
    /// The network is down: the run stops.
    NoNetwork,
    /// No control answered before the run.
    NoControl,
    /// The config says to stop without a control.
    StoppingWithoutControl,
    /// Most verdicts are inconclusive (followed by why).
    MostlyInconclusive,
    /// Why: the control could not be reached or failed for most URLs.
    BecauseControl,
    /// Why: most URLs could not be reached at all.
    BecauseUnreachable,
    /// "Control failures" (a count follows).
    ControlFailures,
    /// "Control asked us to slow down" (a count follows).
    ControlPushBacks,
    /// The network (ASN, country) is unknown.
    UnknownNetwork,
    /// "Network" (the ASN and country follow).
    Network,
}

/// The words about the network and the control.
pub fn net_words(lang: Lang, w: NetWords) -> &'static str {
    match (lang, w) {
        (Lang::En, NetWords::NoNetwork) => {
            "No network: no resolver, control or STUN server answered. Nothing was measured \
             (the results would only say \"inconclusive\"). Check the connection and run again."
        }
        (Lang::En, NetWords::NoControl) => {
            "No control: the control server could not be reached, so most verdicts will be \
             inconclusive (nothing to compare with)."
        }
        (Lang::En, NetWords::StoppingWithoutControl) => {
            "Stopping: the config says on_no_control = \"stop\". Nothing was measured."
        }
        (Lang::En, NetWords::MostlyInconclusive) => {
            "Most verdicts are inconclusive, so this run cannot say whether sites are blocked"
        }
        (Lang::En, NetWords::BecauseControl) => "the control could not be used",
        (Lang::En, NetWords::BecauseUnreachable) => {
            "most sites could not be reached from here or from the control"
        }
        (Lang::En, NetWords::ControlFailures) => "measurements without a control answer",
        (Lang::En, NetWords::ControlPushBacks) => "control asked us to slow down (waited, retried)",
        (Lang::En, NetWords::UnknownNetwork) => {
            "Unknown network: results will say AS0/ZZ, so comparisons merge this network \
             with others. Run `gatewatch geo update`, or give --probe-asn and --probe-cc."
        }
        (Lang::En, NetWords::Network) => "Network",
        (Lang::Km, NetWords::NoNetwork) => {
            "គ្មានបណ្តាញ៖ គ្មាន resolver, control ឬ STUN server ណាមួយឆ្លើយតបទេ។ មិនបានវាស់អ្វីទាំងអស់ \
             (លទ្ធផលនឹងគ្រាន់តែថា \"មិនអាចសន្និដ្ឋានបាន\")។ សូមពិនិត្យការតភ្ជាប់ ហើយដំណើរការម្តងទៀត។"
        }
        (Lang::Km, NetWords::NoControl) => {
            "គ្មាន control៖ មិនអាចទាក់ទង control server បានទេ ដូច្នេះលទ្ធផលភាគច្រើននឹង \
             មិនអាចសន្និដ្ឋានបាន (គ្មានអ្វីសម្រាប់ប្រៀបធៀប)។"
        }
        (Lang::Km, NetWords::StoppingWithoutControl) => {
            "កំពុងបញ្ឈប់៖ ឯកសារ config កំណត់ on_no_control = \"stop\"។ មិនបានវាស់អ្វីទាំងអស់។"
        }
        (Lang::Km, NetWords::MostlyInconclusive) => {
            "លទ្ធផលភាគច្រើនមិនអាចសន្និដ្ឋានបាន ដូច្នេះការវាស់នេះមិនអាចប្រាប់ថាគេហទំព័រត្រូវបានបិទឬអត់ទេ"
        }
        (Lang::Km, NetWords::BecauseControl) => "មិនអាចប្រើ control បាន",
        (Lang::Km, NetWords::BecauseUnreachable) => "គេហទំព័រភាគច្រើនមិនអាចចូលបាន ទាំងពីទីនេះ និងពី control",
        (Lang::Km, NetWords::ControlFailures) => "ការវាស់ដែលគ្មានចម្លើយពី control",
        (Lang::Km, NetWords::UnknownNetwork) => {
            "មិនស្គាល់បណ្តាញ៖ លទ្ធផលនឹងសរសេរ AS0/ZZ ដូច្នេះការប្រៀបធៀបនឹងលាយបណ្តាញនេះ \
             ជាមួយបណ្តាញផ្សេងទៀត។ សូមដំណើរការ `gatewatch geo update` ឬផ្តល់ --probe-asn និង --probe-cc។"
        }
        (Lang::Km, NetWords::Network) => "បណ្តាញ",
        (Lang::Km, NetWords::ControlPushBacks) => {
            "control បានស្នើឲ្យយឺតជាងនេះ (បានរង់ចាំ ហើយព្យាយាមម្តងទៀត)"
        }
    }
}

const CONSENT_EN: &str = "\
gatewatch: please read this before the first run

gatewatch opens every site on the test list (news, human rights, politics,
circumvention tools) from this internet connection, and writes what it sees
to a file on this computer.

Risks in Cambodia:
- Anyone who watches this connection (your internet provider, and the
  National Internet Gateway once it operates) can see that it tried to open
  these sites. Article 14 of the NIG sub-decree has operators keep traffic
  records, including IP addresses, for 12 months.
- The results file shows that someone tested these sites from your network.
  Keep it safe and share it only with people you trust.
- The law is broad. People in Cambodia have been arrested for what they
  wrote online, and article 80 of the Telecommunications Law carries 7 to 15
  years in prison for using equipment in a way said to harm national
  security. We cannot promise how the authorities would see a measurement.

Who else learns something, on a default run:
- OONI's public test helpers (*.th.ooni.org, run by the OONI project)
  receive every URL measured and see your public IP address. To avoid
  them: --control with your team's own `gatewatch control serve`, or
  --control none (most verdicts will then be inconclusive).
- A STUN server (stun.l.google.com, run by Google) sees your public IP
  address; gatewatch asks it only to scrub that address from the results.
  To avoid it: --stun none.
- Google Public DNS (8.8.8.8) is asked for the name of every site, besides
  your own resolver. To avoid it: --resolver with a resolver you choose.
- example.com (run by IANA for examples) is loaded over HTTP and HTTPS before
  and during the run, beside the control's own host, to tell a captive portal
  or a dead connection from censorship; it learns nothing about the sites
  measured. To choose other targets: --reference URL; none: --reference none.
The same can be set once in the config file (control, stun, resolver, reference).

gatewatch never writes your public IP address into the results, but it does
not hide your traffic. If you are unsure, do not run it, or first ask
someone you trust or a lawyer.
";

const CONSENT_KM: &str = "\
gatewatch៖ សូមអានសេចក្តីនេះមុនពេលដំណើរការលើកដំបូង

gatewatch បើកគេហទំព័រនីមួយៗក្នុងបញ្ជីតេស្ត (ព័ត៌មាន សិទ្ធិមនុស្ស នយោបាយ
និងកម្មវិធីជៀសវាងការបិទ) តាមរយៈការតភ្ជាប់អ៊ីនធឺណិតនេះ ហើយកត់ត្រាអ្វីដែលវាឃើញ
ទុកក្នុងឯកសារមួយនៅលើកុំព្យូទ័រនេះ។

ហានិភ័យនៅកម្ពុជា៖
- អ្នកណាដែលតាមដានការតភ្ជាប់នេះ (ក្រុមហ៊ុនផ្តល់សេវាអ៊ីនធឺណិតរបស់អ្នក និងច្រកចេញចូល
  អ៊ីនធឺណិតជាតិ NIG នៅពេលវាដំណើរការ) អាចឃើញថា ការតភ្ជាប់នេះបានព្យាយាមបើក
  គេហទំព័រទាំងនេះ។ មាត្រា ១៤ នៃអនុក្រឹត្យ NIG តម្រូវឲ្យប្រតិបត្តិកររក្សាទុក
  កំណត់ត្រាចរាចរណ៍ រួមទាំងអាសយដ្ឋាន IP រយៈពេល ១២ ខែ។
- ឯកសារលទ្ធផលបង្ហាញថា មាននរណាម្នាក់បានតេស្តគេហទំព័រទាំងនេះពីបណ្តាញរបស់អ្នក។
  សូមរក្សាវាឲ្យមានសុវត្ថិភាព ហើយចែករំលែកតែជាមួយមនុស្សដែលអ្នកទុកចិត្តប៉ុណ្ណោះ។
- ច្បាប់មានវិសាលភាពទូលាយ។ នៅកម្ពុជា មានមនុស្សត្រូវបានចាប់ខ្លួនដោយសារអ្វីដែលពួកគេ
  សរសេរលើអ៊ីនធឺណិត ហើយមាត្រា ៨០ នៃច្បាប់ស្តីពីទូរគមនាគមន៍ មានទោសជាប់ពន្ធនាគារ
  ពី ៧ ទៅ ១៥ ឆ្នាំ ចំពោះការប្រើប្រាស់ឧបករណ៍ដែលគេចាត់ទុកថាប៉ះពាល់ដល់សន្តិសុខជាតិ។
  យើងមិនអាចសន្យាបានថា អាជ្ញាធរនឹងចាត់ទុកការវាស់នេះយ៉ាងដូចម្តេចទេ។

អ្នកផ្សេងទៀតដែលដឹងអ្វីមួយ នៅពេលដំណើរការតាមលំនាំដើម៖
- ម៉ាស៊ីនជំនួយតេស្តសាធារណៈរបស់ OONI (*.th.ooni.org ដែលគម្រោង OONI ដំណើរការ)
  ទទួលបាន URL នីមួយៗដែលបានវាស់ ហើយឃើញអាសយដ្ឋាន IP សាធារណៈរបស់អ្នក។ ដើម្បីជៀសវាង៖
  ប្រើ --control ជាមួយ `gatewatch control serve` ផ្ទាល់របស់ក្រុមអ្នក ឬ --control none
  (ពេលនោះ លទ្ធផលភាគច្រើននឹងមិនអាចសន្និដ្ឋានបាន)។
- ម៉ាស៊ីន STUN (stun.l.google.com ដែល Google ដំណើរការ) ឃើញអាសយដ្ឋាន IP សាធារណៈ
  របស់អ្នក។ gatewatch សួរវា គ្រាន់តែដើម្បីលុបអាសយដ្ឋាននោះចេញពីលទ្ធផលប៉ុណ្ណោះ។
  ដើម្បីជៀសវាង៖ --stun none។
- Google Public DNS (8.8.8.8) ត្រូវបានសួរឈ្មោះនៃគេហទំព័រនីមួយៗ ក្រៅពី resolver
  របស់អ្នកផ្ទាល់។ ដើម្បីជៀសវាង៖ --resolver ជាមួយ resolver ដែលអ្នកជ្រើសរើស។
- example.com (ដែល IANA ដំណើរការសម្រាប់ជាឧទាហរណ៍) ត្រូវបានបើកតាម HTTP និង HTTPS
  មុន និងអំឡុងពេលដំណើរការ ជាមួយម៉ាស៊ីនរបស់ control ផ្ទាល់ ដើម្បីបែងចែក captive portal
  ឬការតភ្ជាប់ដែលដាច់ ពីការបិទ។ វាមិនដឹងអ្វីអំពីគេហទំព័រដែលបានវាស់ទេ។ ដើម្បីជ្រើសគោលដៅផ្សេង៖
  --reference URL ឬគ្មាន៖ --reference none។
ការកំណត់ទាំងនេះ អាចដាក់ម្តងក្នុងឯកសារ config (control, stun, resolver, reference)។

gatewatch មិនដែលសរសេរអាសយដ្ឋាន IP សាធារណៈរបស់អ្នកទៅក្នុងលទ្ធផលទេ ប៉ុន្តែវាមិនលាក់
ចរាចរណ៍របស់អ្នកទេ។ បើអ្នកមិនប្រាកដចិត្ត សូមកុំដំណើរការវា ឬសួរមនុស្សដែលអ្នកទុកចិត្ត
ឬមេធាវីជាមុនសិន។
";

/// The warning when this machine's clock is off: `amount` (e.g. `400
/// days`), `behind` true when the local clock is behind the reference.
pub fn clock_warning(lang: Lang, amount: &str, behind: bool, source: &str) -> String {
    match lang {
        Lang::En => format!(
            "warning: this device's clock is {amount} {} the reference time ({source}). \
             Times in the results are corrected, and certificates are judged at the corrected \
             time; please set the clock (turn on NTP).",
            if behind { "behind" } else { "ahead of" }
        ),
        Lang::Km => format!(
            "ការព្រមាន៖ នាឡិការបស់ឧបករណ៍នេះ{}ម៉ោងយោង {amount} ({source})។ \
             ម៉ោងក្នុងលទ្ធផលត្រូវបានកែតម្រូវ ហើយវិញ្ញាបនបត្រត្រូវបានពិនិត្យតាមម៉ោងដែលបានកែ។ \
             សូមកំណត់ម៉ោងឲ្យត្រឹមត្រូវ (បើក NTP)។",
            if behind {
                "យឺតជាង"
            } else {
                "លឿនជាង"
            }
        ),
    }
}

/// The warning when no reference time could be had.
pub fn clock_unchecked(lang: Lang) -> &'static str {
    match lang {
        Lang::En => {
            "warning: the clock could not be checked against a reference time; \
             certificate dates are not used as evidence of interception."
        }
        Lang::Km => {
            "ការព្រមាន៖ មិនអាចផ្ទៀងផ្ទាត់នាឡិកាជាមួយម៉ោងយោងបានទេ។ \
             កាលបរិច្ឆេទវិញ្ញាបនបត្រមិនត្រូវបានប្រើជាភស្តុតាងនៃការស្ទាក់ចាប់ទេ។"
        }
    }
}

/// Network-wide interception seen from `since` (`HH:MM`), with the portal
/// when one was recognised.
pub fn network_wide_message(lang: Lang, since: &str, portal: Option<&str>) -> String {
    let portal = portal.map(|p| format!(": {p}")).unwrap_or_default();
    match lang {
        Lang::En => format!(
            "network-wide interception (captive portal, walled garden, or the connection \
             stopped working) from {since} UTC{portal}. The reference targets fail too, so \
             failures now say nothing about the sites; they are recorded as inconclusive."
        ),
        Lang::Km => format!(
            "ការស្ទាក់ចាប់ទូទាំងបណ្តាញ (ទំព័រចូលប្រើ Wi-Fi, សួនបិទជុំវិញ \
             ឬការតភ្ជាប់បានឈប់ដំណើរការ) ចាប់ពីម៉ោង {since} UTC{portal}។ \
             គោលដៅយោងក៏បរាជ័យដែរ ដូច្នេះការបរាជ័យមិនប្រាប់អ្វីអំពីគេហទំព័រទេ \
             ហើយត្រូវបានកត់ត្រាថា មិនអាចសន្និដ្ឋានបាន។"
        ),
    }
}

/// The question whether to measure on during network-wide interception.
pub fn network_wide_prompt(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "Measure anyway (affected results are marked inconclusive)? [y/N]: ",
        Lang::Km => "វាស់បន្តឬទេ (លទ្ធផលដែលរងផលប៉ះពាល់នឹងត្រូវសម្គាល់ថា មិនអាចសន្និដ្ឋានបាន)? [y/N]: ",
    }
}

/// The run stops because of network-wide interception.
pub fn network_wide_stopping(lang: Lang) -> &'static str {
    match lang {
        Lang::En => {
            "Stopping. What was measured is kept. Accept the network's terms or top up, \
             then run again with --resume: the affected URLs are measured again."
        }
        Lang::Km => {
            "កំពុងបញ្ឈប់។ អ្វីដែលបានវាស់ត្រូវបានរក្សាទុក។ សូមយល់ព្រមលក្ខខណ្ឌរបស់បណ្តាញ \
             ឬបញ្ចូលលុយ រួចដំណើរការម្តងទៀតជាមួយ --resume៖ URL ដែលរងផលប៉ះពាល់នឹងត្រូវវាស់ម្តងទៀត។"
        }
    }
}

/// One summary line for an episode of network-wide interception.
pub fn network_wide_summary(
    lang: Lang,
    since: &str,
    until: Option<&str>,
    portal: Option<&str>,
    marked: u64,
) -> String {
    let portal = portal.map(|p| format!(": {p}")).unwrap_or_default();
    match lang {
        Lang::En => format!(
            "Network-wide interception (captive portal, walled garden, or the connection \
             stopped working) from {since}{} UTC{portal}; {marked} result(s) marked inconclusive.",
            until.map(|u| format!(" until {u}")).unwrap_or_default()
        ),
        Lang::Km => format!(
            "ការស្ទាក់ចាប់ទូទាំងបណ្តាញ (ទំព័រចូលប្រើ Wi-Fi, សួនបិទជុំវិញ \
             ឬការតភ្ជាប់បានឈប់ដំណើរការ) ចាប់ពីម៉ោង {since}{} UTC{portal}។ \
             លទ្ធផល {marked} ត្រូវបានសម្គាល់ថា មិនអាចសន្និដ្ឋានបាន។",
            until.map(|u| format!(" ដល់ម៉ោង {u}")).unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locale_names() {
        assert_eq!(Lang::parse("km_KH.UTF-8"), Some(Lang::Km));
        assert_eq!(Lang::parse("en_US.UTF-8"), Some(Lang::En));
        assert_eq!(Lang::parse("C.UTF-8"), Some(Lang::En));
        assert_eq!(Lang::parse("fr_FR"), None);
    }

    #[test]
    fn both_languages_cover_the_risks() {
        for l in [Lang::En, Lang::Km] {
            let t = consent_text(l);
            // Article 14 (NIG logs), article 80 (Telecom Law), 12 months.
            assert!(t.contains("14") || t.contains("១៤"));
            assert!(t.contains("80") || t.contains("៨០"));
            assert!(t.contains("NIG"));
            // Who else learns what, and how to avoid them.
            for third in ["th.ooni.org", "stun.l.google.com", "8.8.8.8", "example.com"] {
                assert!(t.contains(third), "{third}");
            }
            for avoid in ["--control", "--stun none", "--resolver", "--reference none"] {
                assert!(t.contains(avoid), "{avoid}");
            }
        }
        assert!(is_acceptance(" yes\n"));
        assert!(is_acceptance("យល់ព្រម"));
        assert!(!is_acceptance("no"));
        assert!(!is_acceptance(""));
    }
}
